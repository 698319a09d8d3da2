//! Deliberately broken implementations.
