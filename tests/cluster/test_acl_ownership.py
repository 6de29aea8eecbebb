"""With ACLs on, a bucket's owner is held to them as S3 holds it (access._acls_bind_owner).

An object another account wrote is that account's: the bucket's owner reads it or its ACL
only when the object's ACL grants it, and may still delete it. A bucket ACL the owner
stripped of its own grants takes its listing and writing away, never its ACL.
"""
from .harness import ACCESS_KEY, OTHER_ACCESS_KEY
from .test_access_control import DENY, _acls_on, _body, _clients, _code, _grants, _keys, _outcome


def test_objects_other_accounts_wrote_are_theirs(cluster, bucket):
    c = _clients(cluster)
    s3, other = c["owner"], c["other"]
    _acls_on(s3, bucket)
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f'id="{OTHER_ACCESS_KEY}"', GrantFullControl=f'id="{ACCESS_KEY}"')
    other.put_object(Bucket=bucket, Key="kept", Body=_body(101))
    other.put_object(Bucket=bucket, Key="shown", Body=_body(102), GrantRead=f'id="{ACCESS_KEY}"')
    assert _code(lambda: s3.get_object(Bucket=bucket, Key="kept")) == ("AccessDenied", 403)
    assert _code(lambda: s3.get_object_acl(Bucket=bucket, Key="kept")) == ("AccessDenied", 403)
    assert _code(lambda: s3.put_object_acl(Bucket=bucket, Key="kept", ACL="public-read")) == ("AccessDenied", 403)
    assert _grants(other.get_object_acl(Bucket=bucket, Key="kept")) == {(OTHER_ACCESS_KEY, "FULL_CONTROL")}
    # a READ grant opens the bytes to the bucket's owner, not the ACL
    assert s3.get_object(Bucket=bucket, Key="shown")["Body"].read() == _body(102)
    assert _outcome(lambda: s3.get_object_acl(Bucket=bucket, Key="shown")) == DENY
    # the owner's own objects and listing are untouched, and it may delete what others wrote
    s3.put_object(Bucket=bucket, Key="mine", Body=_body(103))
    assert s3.get_object(Bucket=bucket, Key="mine")["Body"].read() == _body(103)
    assert sorted(_keys(s3, bucket)) == ["kept", "mine", "shown"]
    s3.delete_object(Bucket=bucket, Key="kept")
    assert sorted(_keys(s3, bucket)) == ["mine", "shown"]


def test_an_owner_without_grants_keeps_only_the_acl(cluster, bucket):
    s3 = _clients(cluster)["owner"]
    _acls_on(s3, bucket)
    s3.put_object(Bucket=bucket, Key="before", Body=_body(111))
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": []})
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == []
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="after", Body=b"x")) == ("AccessDenied", 403)
    assert _code(lambda: s3.list_objects_v2(Bucket=bucket)) == ("AccessDenied", 403)
    assert _code(lambda: s3.delete_object(Bucket=bucket, Key="before")) == ("AccessDenied", 403)
    # its own object's ACL still grants it the bytes
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == _body(111)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {(ACCESS_KEY, "FULL_CONTROL")}
    assert _keys(s3, bucket) == ["before"]   # nothing the refused requests asked for was done
    s3.put_object(Bucket=bucket, Key="after", Body=_body(112))
    assert sorted(_keys(s3, bucket)) == ["after", "before"]


def test_acls_off_the_owner_reads_everything(cluster, bucket):
    """BucketOwnerEnforced: the bucket's owner owns every object, whoever wrote it."""
    c = _clients(cluster)
    s3, other = c["owner"], c["other"]
    s3.put_bucket_policy(Bucket=bucket, Policy=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "%s"}, '
        '"Action": "s3:PutObject", "Resource": "arn:aws:s3:::%s/*"}]}' % (OTHER_ACCESS_KEY, bucket)))
    other.put_object(Bucket=bucket, Key="dropped", Body=_body(121))
    assert s3.get_object(Bucket=bucket, Key="dropped")["Body"].read() == _body(121)
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="dropped")) == {(ACCESS_KEY, "FULL_CONTROL")}
    # an ACL without the owner's FULL_CONTROL is not bucket-owner-full-control: refused, nothing changed
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    for grant_list in ([], [{"Grantee": {"Type": "CanonicalUser", "ID": ACCESS_KEY}, "Permission": "READ"}]):
        assert _code(lambda: s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
            "Owner": owner, "Grants": grant_list})) == ("AccessControlListNotSupported", 400)
    assert _code(lambda: s3.put_object_acl(Bucket=bucket, Key="dropped", AccessControlPolicy={
        "Owner": owner, "Grants": []})) == ("AccessControlListNotSupported", 400)
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {(ACCESS_KEY, "FULL_CONTROL")}
    assert s3.get_object(Bucket=bucket, Key="dropped")["Body"].read() == _body(121)
