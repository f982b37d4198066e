-- Who makes this transaction's changes (read by the history trigger).
SELECT set_config('onemap.actor', :actor, true)
