"""The HMPPS domain-events queue and its dead-letter queue, over boto3 (SQS, or moto's server locally).

The message attributes the integration adds to what it sends are named in ``core/messages.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence

import boto3
from botocore.config import Config

from ..core.messages import (
    ATTEMPTS,
    FAILED_AT,
    FAILED_BY,
    FAILURE_REASON,
    MAX_ATTRIBUTE_LENGTH,
    QueueDepth,
    QueueMessage,
)
from ..core.text import queue_safe


def sqs_client(region_name: str | None = None, endpoint_url: str | None = None):
    """boto3 SQS client; ``AWS_ENDPOINT_URL``/``AWS_REGION`` apply when the arguments are None.

    A local endpoint (moto, fauxqs) accepts any signature: when the usual credential chain finds none, the client
    signs with dummy ones (passed to the client, never written to the environment). Production (IRSA) has real ones.
    """
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    credentials = {}
    if endpoint_url and boto3.Session().get_credentials() is None:
        credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.client("sqs", region_name=region_name, endpoint_url=endpoint_url or None, config=config, **credentials)


class SqsEventsQueue:
    """The ``EventsQueue`` port over SQS: one queue plus its dead-letter queue (found from the queue's
    RedrivePolicy unless given)."""

    def __init__(
        self,
        queue_url: str,
        *,
        dlq_url: str | None = None,
        client=None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
    ):
        self.queue_url = queue_url
        self._dlq_url = dlq_url
        self.client = client or sqs_client(region_name, endpoint_url)

    # ----------------------------------------------------------------- main queue

    def receive(
        self,
        max_messages: int = 10,
        *,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
        queue_url: str | None = None,
    ) -> list[QueueMessage]:
        kwargs = dict(
            QueueUrl=queue_url or self.queue_url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_seconds,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        response = self.client.receive_message(**kwargs)
        received_at = time.time()
        return [_message(raw, received_at) for raw in response.get("Messages", [])]

    def delete(self, messages: Sequence[tuple[str, str]], *, queue_url: str | None = None) -> list[str]:
        """Delete (message id, receipt handle) pairs in batches of 10; returns the ids that failed."""
        failed: list[str] = []
        for chunk in _tens(messages):
            response = self.client.delete_message_batch(
                QueueUrl=queue_url or self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle) in enumerate(chunk)],
            )
            failed += [chunk[int(entry["Id"])][0] for entry in response.get("Failed", [])]
        return failed

    def change_visibility(
        self, messages: Sequence[tuple[str, str]], seconds: int, *, queue_url: str | None = None
    ) -> list[str]:
        """Set the visibility timeout of in-flight messages (lease extension or retry back-off)."""
        failed: list[str] = []
        for chunk in _tens(messages):
            response = self.client.change_message_visibility_batch(
                QueueUrl=queue_url or self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": int(seconds)}
                    for i, (_, handle) in enumerate(chunk)
                ],
            )
            failed += [chunk[int(entry["Id"])][0] for entry in response.get("Failed", [])]
        return failed

    def send(
        self,
        body: str,
        attributes: Mapping[str, str] | None = None,
        *,
        delay_seconds: int = 0,
        queue_url: str | None = None,
    ) -> str:
        # Only characters SQS accepts (core/text.py): a lone surrogate or a control character from a parsed event
        # would make SendMessage fail, and a message that cannot be dead-lettered comes back again and again.
        response = self.client.send_message(
            QueueUrl=queue_url or self.queue_url,
            MessageBody=queue_safe(body),
            DelaySeconds=delay_seconds,
            MessageAttributes=_attributes(attributes or {}),
        )
        return response["MessageId"]

    def depth(self, queue_url: str | None = None) -> QueueDepth:
        attrs = self.client.get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return QueueDepth(
            int(attrs.get("ApproximateNumberOfMessages", 0)),
            int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    # ----------------------------------------------------------------- dead-letter queue

    @property
    def dlq_url(self) -> str:
        if self._dlq_url is None:
            attrs = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]
            if "RedrivePolicy" not in attrs:
                raise RuntimeError("the events queue has no RedrivePolicy, so it has no dead-letter queue")
            arn = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]
            _, _, _, _, account, name = arn.split(":", 5)
            self._dlq_url = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return self._dlq_url

    def dead_letter(
        self, message: QueueMessage, reason: str, *, failed_by: str | None = None, body: str | None = None
    ) -> None:
        """Send the message to the DLQ with a readable reason, then delete it from the main queue."""
        attributes = dict(message.attributes)
        attributes.update(
            {
                FAILURE_REASON: reason[:MAX_ATTRIBUTE_LENGTH],
                FAILED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                ATTEMPTS: str(message.receive_count),
            }
        )
        if failed_by:
            attributes[FAILED_BY] = failed_by
        self.send(body if body is not None else message.body, attributes, queue_url=self.dlq_url)
        self.delete([(message.message_id, message.receipt_handle)])

    def receive_dlq(
        self, max_messages: int = 10, *, wait_seconds: int = 0, visibility_timeout: int = 30
    ) -> list[QueueMessage]:
        return self.receive(
            max_messages, wait_seconds=wait_seconds, visibility_timeout=visibility_timeout, queue_url=self.dlq_url
        )

    def delete_dlq(self, messages: Sequence[tuple[str, str]]) -> list[str]:
        return self.delete(messages, queue_url=self.dlq_url)

    def dlq_depth(self) -> QueueDepth:
        return self.depth(self.dlq_url)


def _message(raw: dict, received_at: float) -> QueueMessage:
    system = raw.get("Attributes", {})
    attributes = {
        name: value.get("StringValue", "")
        for name, value in raw.get("MessageAttributes", {}).items()
        if "StringValue" in value
    }
    sent = system.get("SentTimestamp")
    return QueueMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", 1)),
        sent_timestamp_ms=int(sent) if sent else None,
        attributes=attributes,
        received_at=received_at,
    )


def _attributes(values: Mapping[str, str]) -> dict:
    return {
        name: {"DataType": "String", "StringValue": queue_safe(str(value)) or "-"} for name, value in values.items()
    }


def _tens(items: Iterable) -> list[list]:
    items = list(items)
    return [items[i : i + 10] for i in range(0, len(items), 10)]
