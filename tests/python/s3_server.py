"""An S3-compatible server on loopback for the tests (moto, with conditional writes), with
signature checks on: prints one JSON line {"endpoint", "bucket", "key", "secret"} once it
serves, then runs until stdin closes (the test process ends) or it is killed.

Usage: s3_server.py BUCKET

The credentials printed belong to an IAM user allowed every S3 action; any other credentials
are refused (moto checks them once INITIAL_NO_AUTH_ACTION_COUNT requests have been served,
here the set-up requests below).
"""

import json
import os
import socket
import sys
import warnings

warnings.simplefilter("ignore")

SETUP_REQUESTS = 4
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_REQUESTS)

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(bucket: str) -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    setup = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="metaxy")
    iam.put_user_policy(
        UserName="metaxy",
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="metaxy")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket=bucket)
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "bucket": bucket,
                "key": key["AccessKeyId"],
                "secret": key["SecretAccessKey"],
            }
        ),
        flush=True,
    )
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1])
