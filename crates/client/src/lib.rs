//! nymd-client: the client state machine of one Nym identity, sans IO.
