//! The push executor. (to be written)
