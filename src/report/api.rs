//! The CUDA entry points kvscope records, by their exported symbol names.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Where an allocation lives. Device memory includes VMM physical handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    Device,
    Managed,
    Host,
}

/// Flags of an entry point (the table's flag column).
const ALLOCATES: u8 = 1;
const POOLED: u8 = 2;
const PLUGGABLE: u8 = 4;

/// Generates `Api` from the `recorded` and `own` rows of the table in
/// `report/hooked.rs`; the other columns are the shim's business.
macro_rules! define_api {
    (
        recorded { $($variant:ident : $sym:ident ($($args:tt)*) $lib:ident $space:ident [$($flag:ident)*] => $how:ident $params:tt;)* }
        own { $($own:ident : $own_sym:ident $own_space:ident [$($own_flag:ident)*] => $own_mod:ident;)* }
        $($rest:tt)*
    ) => {
        /// An allocation or free entry point. Serialised as its symbol name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Api {
            $($variant,)*
            $($own,)*
        }

        impl Api {
            pub const ALL: &'static [Api] = &[$(Api::$variant,)* $(Api::$own,)*];

            /// The exported symbol.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Api::$variant => stringify!($sym),)*
                    $(Api::$own => stringify!($own_sym),)*
                }
            }

            /// The memory space an allocation made through this entry point occupies.
            pub const fn space(self) -> Space {
                match self {
                    $(Api::$variant => Space::$space,)*
                    $(Api::$own => Space::$own_space,)*
                }
            }

            const fn flags(self) -> u8 {
                match self {
                    $(Api::$variant => 0 $(| $flag)*,)*
                    $(Api::$own => 0 $(| $own_flag)*,)*
                }
            }
        }
    };
}

super::hooked::hooked_functions!(define_api);

impl Api {
    pub fn from_u8(v: u8) -> Option<Api> {
        Api::ALL.get(v as usize).copied()
    }

    pub fn from_name(s: &str) -> Option<Api> {
        Api::ALL.iter().copied().find(|a| a.name() == s)
    }

    /// Entry points that allocate (as opposed to free, reserve or map).
    pub const fn allocates(self) -> bool {
        self.flags() & ALLOCATES != 0
    }

    /// kvscope's own allocator (PyTorch's pluggable allocator interface).
    pub const fn pluggable(self) -> bool {
        self.flags() & PLUGGABLE != 0
    }

    /// Device allocations of their own (cudaMalloc and its kin), which the
    /// driver rounds up to its 2 MiB granularity: allocating, on the device,
    /// neither from a pool nor a VMM handle (whose sizes are the caller's).
    pub const fn plain(self) -> bool {
        self.allocates()
            && matches!(self.space(), Space::Device)
            && !self.pooled()
            && !matches!(self, Api::CuMemCreate)
    }

    /// Stream-ordered pool allocations (their memory is pool memory, kept reserved when freed).
    pub const fn pooled(self) -> bool {
        self.flags() & POOLED != 0
    }
}

impl Serialize for Api {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Api {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Api, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Api::from_name(&name)
            .ok_or_else(|| de::Error::custom(format_args!("unknown entry point {name:?}")))
    }
}

/// The name of a CUDA error code (runtime and driver share the values kvscope sees most).
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "invalid_value",
        2 => "out_of_memory",
        3 => "not_initialized",
        4 => "deinitialized",
        34 => "stub_library",
        35 => "insufficient_driver",
        100 => "no_device",
        101 => "invalid_device",
        201 => "invalid_context",
        302 => "symbol_not_found",
        400 => "invalid_handle",
        500 => "not_found",
        800 => "not_permitted",
        801 => "not_supported",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_allocations_are_the_driver_rounded_ones() {
        let plain: Vec<&str> = Api::ALL
            .iter()
            .filter(|a| a.plain())
            .map(|a| a.name())
            .collect();
        assert_eq!(
            plain,
            [
                "cudaMalloc",
                "cudaMallocPitch",
                "cuMemAlloc_v2",
                "cuMemAllocPitch_v2",
                "cudaMalloc3D"
            ]
        );
    }

    #[test]
    fn names_round_trip_through_u8_and_serde() {
        for (i, a) in Api::ALL.iter().enumerate() {
            assert_eq!(Api::from_u8(i as u8), Some(*a));
            assert_eq!(Api::from_name(a.name()), Some(*a));
            let json = serde_json::to_string(a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
        }
    }
}
