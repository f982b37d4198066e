-- Remember when a token was last used.
UPDATE api_tokens SET last_used_at = now() WHERE token_hash = :h
