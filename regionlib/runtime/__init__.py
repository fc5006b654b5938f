"""Runtime (layer 5's plumbing): local Ray on loopback and the Ray Data shard runner (`distributed`),
sharded outputs with per-shard manifests (`shards`), the frozen-encoder feature cache (`feature_cache`)."""
