//! The fail log on disk. (to be written)
