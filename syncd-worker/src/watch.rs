//! The inotify adapter. (to be written)
