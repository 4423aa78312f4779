//! Maps read on every request and built from the config alone (models,
//! prices, key hashes, limit scopes). SipHash guards maps that callers can
//! fill; these hold only configured entries, so nobody can crowd a bucket,
//! and a faster hasher saves a few hundred instructions a request.

pub type Lookup<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
