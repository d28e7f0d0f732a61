//! Does memory come back after requests? The points with no request in
//! flight and the stretches of serving between them (`points`), read as a
//! caching allocator's engineer would (`classify`): warm-up, the cache
//! following the largest request, or memory kept after requests no larger
//! than ones already served (a leak).

pub mod classify;
pub mod points;
