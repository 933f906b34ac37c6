//! Post-push hooks. (to be written)
