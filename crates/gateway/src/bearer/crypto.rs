//! Signature verification for `jsonwebtoken` on `ring`, the crypto library the gateway's TLS
//! already uses: one more crate for JWT validation instead of a second crypto stack (RustCrypto's
//! RSA and curves) or a C build (aws-lc). Verification only, of the asymmetric algorithms an
//! identity provider signs access tokens with; a shared-secret (HS*) key or `none` is refused,
//! and a key of one family never verifies an algorithm of another.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

/// The provider [`install`] makes the process default.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring the process's JWT crypto. Idempotent; the gateway signs no JWT and never computes
/// a key thumbprint, so only verification is provided.
pub fn install() {
    let _ = PROVIDER.install_default();
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::Signing("the gateway signs no JWT".to_owned()).into())
}

/// The ring algorithm of a JWS `alg`, `None` for HS* (a shared secret is not a public key) and
/// for what ring does not verify.
fn ring_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    if let Some(rsa) = rsa_params(alg) {
        return Some(rsa);
    }
    Some(match alg {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        _ => return None,
    })
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let refused = || Error::from(ErrorKind::InvalidAlgorithm);
    if key.family() != alg.family() {
        return Err(refused());
    }
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Key::Rsa {
            n: n.clone(),
            e: e.clone(),
            params: rsa_params(*alg).ok_or_else(refused)?,
        },
        DecodingKeyKind::SecretOrDer(der) => Key::Raw {
            bytes: der.clone(),
            ring: ring_algorithm(*alg).ok_or_else(refused)?,
        },
    };
    Ok(Box::new(Verifier { alg: *alg, key }))
}

enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        params: &'static sig::RsaParameters,
    },
    /// An RSA public key in PKCS#1 DER, an uncompressed EC point, or an Ed25519 key.
    Raw {
        bytes: Vec<u8>,
        ring: &'static dyn VerificationAlgorithm,
    },
}

struct Verifier {
    alg: Algorithm,
    key: Key,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        let ok = match &self.key {
            Key::Rsa { n, e, params } => RsaPublicKeyComponents { n, e }.verify(params, msg, signature).is_ok(),
            Key::Raw { bytes, ring } => UnparsedPublicKey::new(*ring, bytes).verify(msg, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(jsonwebtoken::signature::Error::new())
        }
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{Validation, decode};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    use serde_json::{Value, json};

    use super::*;

    fn token(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let h = B64.encode(header.to_string());
        let c = B64.encode(claims.to_string());
        let msg = format!("{h}.{c}");
        let s = B64.encode(sign(msg.as_bytes()));
        format!("{msg}.{s}")
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        v
    }

    fn check(t: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, ErrorKind> {
        install();
        decode::<Value>(t, key, &validation(alg))
            .map(|d| d.claims)
            .map_err(|e| e.into_kind())
    }

    /// RFC 7515 appendix A.2: an RS256 JWS with its published key.
    #[test]
    fn rfc7515_rs256_example_verifies_and_a_changed_payload_does_not() {
        let n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
        let key = DecodingKey::from_rsa_components(n, "AQAB").unwrap();
        let t = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
        let claims = check(t, &key, Algorithm::RS256).unwrap();
        assert_eq!(claims["iss"], "joe");
        // The same signature over another payload.
        let (h, rest) = t.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", B64.encode(r#"{"iss":"eve"}"#));
        assert_eq!(check(&forged, &key, Algorithm::RS256), Err(ErrorKind::InvalidSignature));
    }

    /// RFC 7515 appendix A.3: an ES256 JWS with its published key.
    #[test]
    fn rfc7515_es256_example_verifies() {
        let key = DecodingKey::from_ec_components(
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        )
        .unwrap();
        let t = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        assert_eq!(check(t, &key, Algorithm::ES256).unwrap()["iss"], "joe");
    }

    #[test]
    fn eddsa_and_p256_tokens_signed_here_verify_and_foreign_algorithms_do_not() {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let ed_key = DecodingKey::from_ed_components(&B64.encode(ed.public_key().as_ref())).unwrap();
        let t = token(&json!({"alg": "EdDSA"}), &json!({"sub": "alice"}), |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(check(&t, &ed_key, Algorithm::EdDSA).unwrap()["sub"], "alice");

        let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
        let ec =
            EcdsaKeyPair::from_pkcs8(alg, EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref(), &rng).unwrap();
        let point = ec.public_key().as_ref();
        let ec_key = DecodingKey::from_ec_components(&B64.encode(&point[1..33]), &B64.encode(&point[33..])).unwrap();
        let t = token(&json!({"alg": "ES256"}), &json!({"sub": "bob"}), |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(check(&t, &ec_key, Algorithm::ES256).unwrap()["sub"], "bob");

        // The EC token presented as RS256, or checked with the Ed25519 key: refused, not tried.
        let (_, rest) = t.split_once('.').unwrap();
        let as_rs = format!("{}.{rest}", B64.encode(r#"{"alg":"RS256"}"#));
        assert_eq!(
            check(&as_rs, &ec_key, Algorithm::RS256),
            Err(ErrorKind::InvalidAlgorithm)
        );
        assert_eq!(check(&t, &ed_key, Algorithm::ES256), Err(ErrorKind::InvalidAlgorithm));
    }

    #[test]
    fn shared_secrets_and_none_are_refused() {
        // HS256 over a "key" an attacker knows (a public key's bytes, the classic confusion).
        let secret = DecodingKey::from_secret(b"public-key-bytes").unwrap();
        let t = token(&json!({"alg": "HS256"}), &json!({"sub": "mallory"}), |_| vec![0; 32]);
        assert_eq!(check(&t, &secret, Algorithm::HS256), Err(ErrorKind::InvalidAlgorithm));
        // `none` does not parse as an algorithm at all.
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(r#"{"sub":"mallory"}"#)
        );
        assert!(check(&none, &secret, Algorithm::RS256).is_err());
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        // A 1024-bit modulus (the top bit set, odd): ring refuses it before looking at the
        // signature.
        let mut n = vec![0xffu8; 128];
        n[127] = 0x01;
        let key = DecodingKey::from_rsa_components(&B64.encode(&n), "AQAB").unwrap();
        let t = token(&json!({"alg": "RS256"}), &json!({"sub": "x"}), |_| vec![1; 128]);
        assert_eq!(check(&t, &key, Algorithm::RS256), Err(ErrorKind::InvalidSignature));
    }
}
