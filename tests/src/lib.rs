//! Placeholder library so the test package builds; the tests live in `e2e/`.
