//! Key pairs and a key set for tests of the authorizer (never used by a deployment).

/// RSA key `key-1` (in [`JWKS`]).
pub const RSA_PRIVATE: &str = include_str!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../keys/rsa_public.pem");
/// RSA key `key-2` (in [`JWKS`]).
pub const RSA2_PRIVATE: &str = include_str!("../keys/rsa2_private.pem");
/// EC P-256 key `ec-1` (in [`JWKS`]).
pub const EC_PRIVATE: &str = include_str!("../keys/ec_private.pem");
pub const EC_PUBLIC: &str = include_str!("../keys/ec_public.pem");
/// The public halves of `key-1`, `key-2` and `ec-1` as a JWKS document.
pub const JWKS: &str = include_str!("../keys/jwks.json");
