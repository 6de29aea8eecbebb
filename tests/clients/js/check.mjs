// The AWS SDK for JavaScript v3 against Pocket, as an application would use it: the SDK's
// defaults (CRC32 request checksums, response checksum validation where asked), the
// multipart `Upload` helper, paginators and presigned URLs. Driven by
// tests/cluster/test_js_sdk.py, which gives the endpoint, credentials, bucket and two body
// files in the environment and checks this script's report (one JSON object on stdout)
// and the stored objects with boto3. Any unexpected error ends the script non-zero.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";

import {
  CopyObjectCommand, DeleteObjectsCommand, GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand,
  PutObjectCommand, S3Client, paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const env = process.env;
const Bucket = env.BUCKET;
const s3 = new S3Client({
  endpoint: env.ENDPOINT, region: "us-east-1", forcePathStyle: true,
  credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
});
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const small = readFileSync(env.SMALL);
const SMALL_KEY = "js/small é+ %.bin";
const LARGE_KEY = "js/large.bin";
const report = {};

async function body(resp) {
  return Buffer.from(await resp.Body.transformToByteArray());
}

async function failure(promise) {
  try {
    await promise;
  } catch (e) {
    return { name: e.name, status: e.$metadata?.httpStatusCode };
  }
  return { name: "no error", status: 0 };
}

// PutObject with the SDK's default request checksum (CRC32), metadata and tags
const put = await s3.send(new PutObjectCommand({
  Bucket, Key: SMALL_KEY, Body: small, ContentType: "application/x-pocket-test",
  Metadata: { origin: "js-sdk" }, Tagging: "team=ops&tier=1",
}));
report.small = { etag: put.ETag, crc32: put.ChecksumCRC32 };

// a body streamed from a file: the SDK sends it aws-chunked, its CRC32 in a trailer
const streamed = await s3.send(new PutObjectCommand({
  Bucket, Key: "js/streamed.bin", Body: createReadStream(env.SMALL), ContentLength: small.length,
}));
report.streamed = { etag: streamed.ETag, crc32: streamed.ChecksumCRC32 };

// a multipart upload from a stream, parts of 5 MiB, three at a time
const upload = new Upload({
  client: s3, queueSize: 3, partSize: 5 * 1024 * 1024,
  params: { Bucket, Key: LARGE_KEY, Body: createReadStream(env.LARGE), ContentType: "application/octet-stream" },
});
report.large = { etag: (await upload.done()).ETag };

const head = await s3.send(new HeadObjectCommand({ Bucket, Key: SMALL_KEY }));
report.head = { etag: head.ETag, type: head.ContentType, length: head.ContentLength, meta: head.Metadata };
const tags = await s3.send(new GetObjectTaggingCommand({ Bucket, Key: SMALL_KEY }));
report.tags = Object.fromEntries(tags.TagSet.map((t) => [t.Key, t.Value]));

// reads: whole (the SDK checks the stored checksum), and a range across the first part boundary
const got = await s3.send(new GetObjectCommand({ Bucket, Key: SMALL_KEY, ChecksumMode: "ENABLED" }));
report.small_get = sha256(await body(got));
const whole = await s3.send(new GetObjectCommand({ Bucket, Key: LARGE_KEY }));
report.large_get = sha256(await body(whole));
const range = await s3.send(new GetObjectCommand({ Bucket, Key: LARGE_KEY, Range: "bytes=5242000-5243999" }));
report.large_range = { sha256: sha256(await body(range)), content_range: range.ContentRange };

// conditional and missing reads: the SDK's errors, with S3's statuses
report.not_modified = await failure(s3.send(new GetObjectCommand({ Bucket, Key: SMALL_KEY, IfNoneMatch: put.ETag })));
report.missing = await failure(s3.send(new GetObjectCommand({ Bucket, Key: "js/never written" })));

// a copy, then a listing one key per page
await s3.send(new CopyObjectCommand({ Bucket, Key: "js/copy.bin", CopySource: encodeURIComponent(`${Bucket}/${SMALL_KEY}`) }));
report.copy_get = sha256(await body(await s3.send(new GetObjectCommand({ Bucket, Key: "js/copy.bin" }))));
const listed = [];
let pages = 0;
for await (const page of paginateListObjectsV2({ client: s3, pageSize: 1 }, { Bucket, Prefix: "js/" })) {
  pages += 1;
  for (const o of page.Contents ?? []) listed.push([o.Key, o.Size]);
}
report.listing = { keys: listed, pages };

// presigned URLs, used with plain fetch as a browser would
const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: LARGE_KEY }), { expiresIn: 300 });
const fetched = await fetch(getUrl);
report.presigned_get = { status: fetched.status, sha256: sha256(Buffer.from(await fetched.arrayBuffer())) };
const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: "js/presigned.bin" }), { expiresIn: 300 });
const sent = await fetch(putUrl, { method: "PUT", body: small.subarray(0, 1000) });
report.presigned_put = { status: sent.status };

const deleted = await s3.send(new DeleteObjectsCommand({
  Bucket, Delete: { Objects: [{ Key: "js/copy.bin" }, { Key: "js/never written" }] },
}));
report.deleted = (deleted.Deleted ?? []).map((d) => d.Key).sort();
report.delete_errors = deleted.Errors ?? [];

process.stdout.write(JSON.stringify(report));
