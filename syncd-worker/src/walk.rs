//! Directory walks. (to be written)
