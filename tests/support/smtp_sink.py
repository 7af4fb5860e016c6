"""An SMTP server on loopback for jitbot's email tests (aiosmtpd).

Usage: smtp_sink.py <directory> [--fail-first N] [--refuse-prefix P]

Prints "listening on <port>" once it accepts connections, and serves until
it is killed. Every message it
accepts is written to <directory>/<n>.json: the envelope, the headers, the
text and HTML parts (decoded), and the raw message. --fail-first N answers
"421" to the first N messages (a server that is briefly unavailable);
--refuse-prefix P answers "550" to recipients whose address starts with P.
Every attempt, accepted or not, is appended to <directory>/attempts.log.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, fail_first, refuse_prefix):
        self.directory = directory
        self.fail_first = fail_first
        self.refuse_prefix = refuse_prefix
        self.accepted = 0
        self.attempts = 0

    def log(self, line):
        with open(os.path.join(self.directory, "attempts.log"), "a") as f:
            f.write(line + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_prefix and address.lower().startswith(self.refuse_prefix):
            self.log(f"refused {address}")
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.attempts <= self.fail_first:
            self.log(f"deferred {','.join(envelope.rcpt_tos)}")
            return "421 4.3.2 Service not available, try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_maintype() == "multipart":
                continue
            parts.setdefault(part.get_content_type(), part.get_content())
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in message.items()},
            "content_type": message.get_content_type(),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
            "raw": envelope.content.decode("utf-8", "replace"),
        }
        self.accepted += 1
        path = os.path.join(self.directory, f"{self.accepted}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        self.log(f"accepted {','.join(envelope.rcpt_tos)}")
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--refuse-prefix", default="")
    args = parser.parse_args()
    sink = Sink(args.directory, args.fail_first, args.refuse_prefix.lower())
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(sink, hostname="sink.test"), "127.0.0.1", 0)
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    # Until the test kills us.
    loop.run_forever()


if __name__ == "__main__":
    main()
