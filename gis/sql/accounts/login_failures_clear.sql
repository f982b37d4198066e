-- A successful login clears the user's failures (the address keeps its count).
DELETE FROM login_failures WHERE user_name = :n
