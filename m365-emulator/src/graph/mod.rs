//! Graph v1.0 routes: users, mail folders, messages, delta, `$value`, `$batch`.
