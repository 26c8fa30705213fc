//! `server.artifacts`: where ended jobs' artifacts are kept. Absent: the data directory.
//! `{s3: {bucket, endpoint, region, access_key: env:VAR, secret_key: env:VAR}}`: an
//! S3-compatible bucket (docs/artifacts.md).

use super::diags::{Diags, Entry};
use crate::config::model::{Resolver, S3Def};

const STORAGE_KEYS: &[&str] = &["s3"];
const S3_KEYS: &[&str] = &["bucket", "endpoint", "region", "access_key", "secret_key"];

pub(super) fn build_storage(
    d: &mut Diags<'_>,
    e: Option<Entry<'_>>,
    resolve: &Resolver,
) -> Option<S3Def> {
    let e = e?;
    let what = "\"server.artifacts\"";
    let f = d.fields(e.key.file, e.value, what, STORAGE_KEYS)?;
    let s3 = f.get("s3")?;
    let what = "\"server.artifacts.s3\"";
    let sf = d.fields(s3.key.file, s3.value, what, S3_KEYS)?;
    let bucket = d.nonempty_string(sf.get("bucket"));
    if bucket.is_none() && sf.get("bucket").is_none() {
        d.err(
            s3.key,
            format!("{what} needs \"bucket\" (the bucket's name)"),
        );
    }
    let endpoint = d.nonempty_string(sf.get("endpoint"));
    if let (Some(u), Some(entry)) = (&endpoint, sf.get("endpoint"))
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        d.err(
            entry.value_loc(),
            format!("invalid endpoint {u:?} in {what}: expected http(s)://host[:port]"),
        );
    }
    let mut key = |name: &str| {
        let k = d.repo_secret(sf.get(name), what, resolve);
        if sf.get(name).is_none() {
            d.err(
                s3.key,
                format!("{what} needs \"{name}\" (env:VARIABLE or file:PATH)"),
            );
        }
        k
    };
    let (access_key, secret_key) = (key("access_key"), key("secret_key"));
    Some(S3Def {
        bucket: bucket?,
        endpoint,
        region: d
            .nonempty_string(sf.get("region"))
            .unwrap_or_else(|| "us-east-1".to_owned()),
        access_key: access_key?,
        secret_key: secret_key?,
    })
}
