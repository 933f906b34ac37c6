//! The coalescing queue (pure core). (to be written)
