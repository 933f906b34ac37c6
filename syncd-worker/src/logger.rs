//! stderr logger. (to be written)
