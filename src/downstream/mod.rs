//! The downstream `/ws` endpoint: browser and app clients subscribe to topics and receive
//! envelopes. (Skeleton: lands with the downstream issue.)
