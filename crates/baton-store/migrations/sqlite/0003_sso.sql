-- Users who sign in through a single sign-on provider: `provider` names it (`server.auth.NAME`);
-- NULL for password users. Such users have no usable password hash (an empty string).
ALTER TABLE users ADD COLUMN provider TEXT;
