//! The worker's main loop. (to be written)
