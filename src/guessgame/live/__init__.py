"""A server in production: either flavour hosted from either world, `guessgame serve`
with its generations and signals, live reload, gradual rollout and per-flavour stats."""
