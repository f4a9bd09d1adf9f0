pub mod placeholder_removed_soon {}
