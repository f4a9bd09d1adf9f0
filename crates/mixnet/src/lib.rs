//! nymd-mixnet: the tokio driver around `nymd-proto`.
//!
//! It will own, per identity: the gateway websocket connection, the Poisson
//! sending streams, retransmission timers, topology refresh over HTTP and the
//! reply-SURB store. It holds no protocol byte layouts of its own: those live
//! in `nymd-proto`.
