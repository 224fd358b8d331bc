//! The checkpoint signing key and signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).
//!
//! The key is an Ed25519 key in the signed-note text form `PRIVATE+KEY+<name>+<key id>+<base64>`,
//! kept in a file (mode 0600) that the collector creates on first start when it is missing. Its
//! public half, the verifier key `<name>+<key id>+<base64>`, is what auditors pin; every verifier
//! key the collector has signed with is recorded in the database (`signing_keys`), so
//! checkpoints signed before a key rotation still verify.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signed_note::{Note, Signer, StandardSigner, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;

/// A signing key and its verifier key.
pub struct SigningKey {
    signer: StandardSigner,
    vkey: String,
}

impl SigningKey {
    /// Reads the key from `path`, or creates a new key named `name` there when the file does
    /// not exist.
    pub fn load_or_create(path: &Path, name: &str) -> anyhow::Result<Self> {
        let file = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text.trim()).with_context(|| format!("signing key {file}")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                anyhow::ensure!(
                    signed_note::is_key_name_valid(name),
                    "key name {name:?} must be non-empty without spaces or `+`"
                );
                let (skey, _) = signed_note::generate_key(&mut rand_core::OsRng, name);
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create signing key {file}"))?;
                writeln!(out, "{skey}")?;
                out.sync_all()?;
                tracing::info!(key = %file, "created a checkpoint signing key");
                Self::parse(&skey)
            }
            Err(err) => Err(err).with_context(|| format!("cannot read signing key {file}")),
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`.
    fn parse(skey: &str) -> anyhow::Result<Self> {
        let signer = StandardSigner::new(skey)
            .map_err(|e| anyhow::anyhow!("not a signed-note Ed25519 private key: {e}"))?;
        let seed = skey
            .splitn(5, '+')
            .nth(4)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .and_then(|key| ed25519_dalek::SigningKey::try_from(key.get(1..)?).ok())
            .context("not a signed-note Ed25519 private key")?;
        let vkey = signed_note::new_ed25519_verifier_key(signer.name(), &seed.verifying_key());
        Ok(Self { signer, vkey })
    }

    /// The verifier key, `<name>+<key id>+<base64(0x01 || public key)>`.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// A signed checkpoint note of the tree `(size, root)` of `origin`, with `extension` lines
    /// (each ending in a newline) after the root.
    pub fn checkpoint(
        &self,
        origin: &str,
        size: u64,
        root: Hash,
        extension: &str,
    ) -> anyhow::Result<String> {
        let body = Checkpoint::new(origin, size, root, extension)
            .map_err(|e| anyhow::anyhow!("checkpoint of {origin:?}: {e}"))?;
        self.sign(&body.to_bytes())
    }

    /// A signed note of `text` (lines ending in a newline).
    pub fn sign(&self, text: &[u8]) -> anyhow::Result<String> {
        let mut note = Note::new(text, &[])?;
        note.add_sigs(&[&self.signer])?;
        Ok(String::from_utf8(note.to_bytes())?)
    }
}

/// Trusted verifier keys.
pub struct Verifiers {
    list: VerifierList,
    count: usize,
}

impl Verifiers {
    pub fn new<'a>(vkeys: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let mut keys: Vec<Box<dyn Verifier>> = Vec::new();
        for vkey in vkeys {
            let verifier = StandardVerifier::new(vkey.trim())
                .map_err(|e| anyhow::anyhow!("public key {vkey:?}: {e}"))?;
            if !keys
                .iter()
                .any(|k| k.name() == verifier.name() && k.key_id() == verifier.key_id())
            {
                keys.push(Box::new(verifier));
            }
        }
        Ok(Self {
            count: keys.len(),
            list: VerifierList::new(keys),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The checkpoint of a note signed by one of the keys, whose origin is `origin`.
    /// The text of a note signed by one of the keys.
    pub fn verify(&self, note: &str) -> anyhow::Result<Vec<u8>> {
        let note = Note::from_bytes(note.as_bytes())
            .map_err(|e| anyhow::anyhow!("not a signed note: {e}"))?;
        note.verify(&self.list).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => {
                anyhow::anyhow!("not signed by any trusted public key")
            }
            other => anyhow::anyhow!("bad signature: {other}"),
        })?;
        Ok(note.text().to_vec())
    }

    pub fn open(&self, note: &str, origin: &str) -> anyhow::Result<Checkpoint> {
        let text = self.verify(note)?;
        let checkpoint = Checkpoint::from_bytes(&text)
            .map_err(|e| anyhow::anyhow!("signed note is not a checkpoint: {e}"))?;
        if checkpoint.origin() != origin {
            bail!(
                "checkpoint of the log {:?}, expected {origin:?}",
                checkpoint.origin()
            );
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::tlog::record_hash;

    #[test]
    fn created_key_is_private_reloads_and_signs_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db.signing-key");
        let key = SigningKey::load_or_create(&path, "acp.example").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let again = SigningKey::load_or_create(&path, "ignored").unwrap();
        assert_eq!(again.vkey(), key.vkey());
        assert!(key.vkey().starts_with("acp.example+"), "{}", key.vkey());

        let root = record_hash(b"x");
        let note = key
            .checkpoint("acp.example/org_a", 7, root, "expired 0 3\n")
            .unwrap();
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(
            lines[..4],
            ["acp.example/org_a", "7", &root.to_string(), "expired 0 3"]
        );
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("— acp.example "), "{note}");

        let trusted = Verifiers::new([key.vkey()]).unwrap();
        let checkpoint = trusted.open(&note, "acp.example/org_a").unwrap();
        assert_eq!((checkpoint.size(), *checkpoint.hash()), (7, root));
        assert_eq!(checkpoint.extension(), "expired 0 3\n");

        let err = trusted.open(&note, "acp.example/org_b").unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        let forged = note.replacen("\n7\n", "\n8\n", 1);
        assert!(trusted.open(&forged, "acp.example/org_a").is_err());
        let other = SigningKey::load_or_create(&dir.path().join("other"), "acp.example").unwrap();
        let err = Verifiers::new([other.vkey()])
            .unwrap()
            .open(&note, "acp.example/org_a")
            .unwrap_err();
        assert!(err.to_string().contains("trusted public key"), "{err}");
    }

    #[test]
    fn bad_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "not a key").unwrap();
        let err = SigningKey::load_or_create(&path, "n").err().unwrap();
        assert!(
            format!("{err:#}").contains("signed-note Ed25519 private key"),
            "{err:#}"
        );
        assert!(SigningKey::load_or_create(&dir.path().join("k2"), "has space").is_err());
        assert!(Verifiers::new(["nope"]).is_err());
    }
}
