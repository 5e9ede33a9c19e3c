//! Delivery workers over the store's outbox: one per receiver, so a slow or dead receiver
//! delays only itself.
