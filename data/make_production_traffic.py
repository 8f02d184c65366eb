"""Write data/production_traffic/: a synthetic OpenTelemetry export of four days of support chat.

The files are what an OpenTelemetry Collector with the ``file`` exporter (one file per day,
``otel/traces-YYYY-MM-DD.jsonl``) writes for an application instrumented after the GenAI semantic
conventions v1.37.0: one OTLP/JSON ``ExportTraceServiceRequest`` per line (int64 values as JSON
strings, ids in hex), a ``chat`` span per model call with ``gen_ai.input.messages`` /
``gen_ai.output.messages`` (parts-based JSON), token usage, the request and response model, and the
application's own attributes (``app.feature``, ``user.tier``, ``conversation.id``). Each
conversation is a trace: an HTTP server span per user turn, a ``chat`` span per model call, and for
order questions an ``execute_tool`` span and a second ``chat`` call that reads the tool's answer.
Some turns also make an ``embeddings`` call (knowledge-base search). Those HTTP, tool and embedding
spans are what a log reader must skip.

Everything is drawn from a seeded generator: the same command writes the same bytes.

    python data/make_production_traffic.py            # writes data/production_traffic/otel/
"""

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "production_traffic" / "otel"
DAYS = ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
MODEL, SERVED = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
SYSTEM = (
    "You are the support assistant of Northwind Outfitters, an online outdoor-gear shop. Answer in two or "
    "three sentences, be concrete, and never promise refunds above the order value."
)
RESOURCE = [
    ("service.name", "support-bot"),
    ("service.version", "2.14.0"),
    ("deployment.environment.name", "production"),
    ("telemetry.sdk.language", "python"),
    ("telemetry.sdk.name", "opentelemetry"),
    ("telemetry.sdk.version", "1.38.0"),
]
SCOPE = {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"}

ITEMS = [
    "trail running shoes",
    "2-person tent",
    "down sleeping bag",
    "rain jacket",
    "hiking backpack (45 L)",
    "headlamp",
    "water filter",
    "trekking poles",
    "merino base layer",
    "camping stove",
]
CITIES = ["Lyon", "Leeds", "Graz", "Utrecht", "Porto", "Gdansk", "Bergen", "Aarhus"]

TOPICS = {
    "billing": {
        "feature": "support-chat",
        "openers": [
            "I was charged twice for my order {order}, can you fix that?",
            "Why is there a charge of {amount} EUR on my card from you? I only bought the {item}.",
            "Can I get an invoice with my company's VAT number for order {order}?",
        ],
        "answers": [
            "I'm sorry about the double charge on order {order}. I've flagged the duplicate payment of {amount} EUR "
            "for reversal; it will be back on your card within 5 business days.",
            "That charge is the {item} from order {order}, which shipped in two parcels, so the payment was split. "
            "The total is {amount} EUR, the same as at checkout.",
            "Yes. Add your VAT number under Account > Billing and open order {order}; the Download invoice "
            "button will then issue a new invoice that includes it.",
        ],
        "followups": [
            (
                "Thanks. Will I get an email when the refund is done?",
                "Yes, you'll get a confirmation email as soon as the reversal of {amount} EUR is processed.",
            ),
            (
                "And can you send the invoice to my accountant directly?",
                "I can't email third parties, but the invoice PDF can be forwarded as it is; it carries your VAT number.",
            ),
        ],
    },
    "shipping": {
        "feature": "order-tracking",
        "openers": [
            "Where is my order {order}? It was supposed to arrive yesterday.",
            "Has my {item} shipped yet? Order {order}.",
            "My parcel for order {order} says delivered but I don't have it.",
        ],
        "answers": [
            "Order {order} left our warehouse on {ship_day} and is with the carrier in {city}; the new delivery "
            "estimate is {eta}. You can follow it with the tracking link in your shipping email.",
            "Yes, your {item} shipped on {ship_day} and should reach you by {eta}.",
            "The carrier marked order {order} delivered in {city} on {ship_day}. Please check with neighbours or "
            "your building's mailroom; if it hasn't turned up within 48 hours, I'll open a carrier investigation.",
        ],
        "followups": [
            (
                "Can you change the delivery address to my office?",
                "Once a parcel is with the carrier we can't redirect it, but you can request a pickup-point delivery "
                "from the carrier's tracking page.",
            ),
            (
                "It still isn't here, please open the investigation.",
                "Done: I've opened a carrier investigation for order {order}. You'll hear from us within 3 business days.",
            ),
        ],
        "tool": True,
    },
    "account": {
        "feature": "support-chat",
        "openers": [
            "I can't log in, the password reset email never arrives.",
            "How do I turn on two-factor authentication?",
            "Please delete my account and my data.",
        ],
        "answers": [
            "Reset emails can take a few minutes and sometimes land in spam. I've sent a new one to the address on "
            "file; the link is valid for 30 minutes.",
            "Go to Account > Security and choose Enable two-factor authentication; scan the QR code with an "
            "authenticator app and enter the six-digit code to confirm.",
            "I've submitted your deletion request. Your account and personal data will be erased within 30 days, "
            "and you'll receive a confirmation email when it's done.",
        ],
        "followups": [
            (
                "Still nothing in my inbox.",
                "I've changed the sender to our backup mail server and sent it again; please also check the Promotions tab.",
            ),
            (
                "Will I lose my order history?",
                "Yes, deleting the account removes the order history too; download your invoices first if you need them.",
            ),
        ],
    },
    "product": {
        "feature": "product-advice",
        "openers": [
            "Is the {item} waterproof?",
            "Which size of the {item} should I get if I'm 182 cm?",
            "Is the {item} good for winter camping at -10 C?",
        ],
        "answers": [
            "The {item} has a water-resistant finish and taped seams, so it handles steady rain, but it isn't "
            "rated for full immersion.",
            "At 182 cm most customers take size L in the {item}; if you're between sizes, the size chart on the "
            "product page lists chest and inseam measurements.",
            "The {item} is rated down to -5 C comfort, so for -10 C I'd pair it with an insulated liner or choose "
            "our expedition model.",
        ],
        "followups": [
            ("Does it come with a warranty?", "Yes, the {item} has a two-year warranty covering manufacturing defects."),
            ("Can I return it if it doesn't fit?", "Yes, unworn items can be returned within 30 days for a full refund."),
        ],
    },
}


class Ids:
    """Trace and span ids from the seeded generator (hex, as OTLP/JSON writes them)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def trace(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def span(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"


def attr(key: str, value) -> dict:
    """One OTLP/JSON attribute (int64 as a JSON string, as the Collector writes it)."""
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [attr("x", x)["value"] for x in value]}}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def nanos(t: datetime) -> str:
    return str(int(t.timestamp() * 1_000_000) * 1000)


def tokens(text: str) -> int:
    return max(1, round(len(text) / 4))


def text_msg(role: str, text: str) -> dict:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def span(
    ids: Ids,
    trace: str,
    parent: str | None,
    name: str,
    kind: int,
    start: datetime,
    end: datetime,
    attrs: list,
    error: str | None = None,
) -> dict:
    s = {
        "traceId": trace,
        "spanId": ids.span(),
        "parentSpanId": parent or "",
        "flags": 256,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": nanos(start),
        "endTimeUnixNano": nanos(end),
        "attributes": attrs,
        "status": {"code": 2, "message": error} if error else {},
    }
    return s


def chat_span(ids, trace, parent, start, history, answer_msg, common, rng, finish="stop"):
    """One ``chat`` call: its span and its duration."""
    prompt_text = " ".join(
        p.get("content", "") if isinstance(p.get("content"), str) else json.dumps(p) for m in history for p in m["parts"]
    )
    answer_text = " ".join(
        p.get("content", "") if isinstance(p.get("content"), str) else json.dumps(p) for p in answer_msg["parts"]
    )
    p_tok, c_tok = tokens(prompt_text) + 8 * len(history), tokens(answer_text) + 2
    dur = 0.35 + c_tok * rng.uniform(0.012, 0.02)
    cached = (p_tok // 128) * 128 if p_tok >= 1024 else 0
    attrs = [
        attr("gen_ai.operation.name", "chat"),
        attr("gen_ai.provider.name", "openai"),
        attr("gen_ai.request.model", MODEL),
        attr("gen_ai.request.temperature", 0.2),
        attr("gen_ai.request.max_tokens", 400),
        attr("gen_ai.response.model", SERVED),
        attr("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(80):020x}"),
        attr("gen_ai.response.finish_reasons", [finish]),
        attr("gen_ai.usage.input_tokens", p_tok),
        attr("gen_ai.usage.output_tokens", c_tok),
        attr("server.address", "api.openai.com"),
        attr("server.port", 443),
        attr("gen_ai.input.messages", json.dumps(history, ensure_ascii=False)),
        attr("gen_ai.output.messages", json.dumps([{**answer_msg, "finish_reason": finish}], ensure_ascii=False)),
    ]
    if cached:
        attrs.append(attr("gen_ai.usage.cache_read.input_tokens", cached))
    attrs += common
    end = start + timedelta(seconds=dur)
    return span(ids, trace, parent, f"chat {MODEL}", 3, start, end, attrs), end


def conversation(rng: random.Random, ids: Ids, day: str, conv_no: int) -> list[dict]:
    """The spans of one conversation (a trace) on ``day``."""
    topic_name = rng.choice(list(TOPICS))
    topic = TOPICS[topic_name]
    d = datetime.fromisoformat(day).replace(tzinfo=UTC)
    # support traffic peaks in office hours (UTC), with a thin night
    hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 10, 9, 8, 6, 5, 4, 3, 2, 1])[0]
    t = d + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60), microseconds=rng.randrange(10**6))
    k = rng.randrange(3)
    fill = {
        "order": f"NW-{rng.randrange(100000, 999999)}",
        "item": rng.choice(ITEMS),
        "amount": f"{rng.randrange(19, 420)}.{rng.randrange(100):02d}",
        "city": rng.choice(CITIES),
        "ship_day": (d - timedelta(days=rng.randrange(1, 4))).strftime("%d %B"),
        "eta": (d + timedelta(days=rng.randrange(1, 4))).strftime("%A %d %B"),
    }
    tier = rng.choices(["free", "plus", "business"], weights=[6, 3, 1])[0]
    conv_id = f"conv-{day.replace('-', '')}-{conv_no:04d}"
    trace = ids.trace()
    common = [
        attr("app.feature", topic["feature"]),
        attr("app.topic", topic_name),
        attr("user.tier", tier),
        attr("conversation.id", conv_id),
        attr("gen_ai.conversation.id", conv_id),
    ]
    history = [text_msg("system", SYSTEM)]
    turns = [(topic["openers"][k].format(**fill), topic["answers"][k].format(**fill))]
    n_follow = rng.choices([0, 1, 2], weights=[5, 4, 2])[0]
    follow = rng.sample(topic["followups"], k=min(n_follow, len(topic["followups"])))
    turns += [(q.format(**fill), a.format(**fill)) for q, a in follow]
    spans = []
    for turn_no, (question, answer) in enumerate(turns):
        history.append(text_msg("user", question))
        http_start = t
        http = span(
            ids,
            trace,
            None,
            "POST /api/chat",
            2,
            t,
            t,
            [
                attr("http.request.method", "POST"),
                attr("http.route", "/api/chat"),
                attr("url.path", "/api/chat"),
                attr("http.response.status_code", 200),
                attr("conversation.id", conv_id),
                attr("user.tier", tier),
            ],
        )
        spans.append(http)
        t += timedelta(milliseconds=rng.randrange(3, 15))
        if topic_name == "product" and turn_no == 0:  # a knowledge-base search first
            emb_end = t + timedelta(milliseconds=rng.randrange(60, 180))
            spans.append(
                span(
                    ids,
                    trace,
                    http["spanId"],
                    "embeddings text-embedding-3-small",
                    3,
                    t,
                    emb_end,
                    [
                        attr("gen_ai.operation.name", "embeddings"),
                        attr("gen_ai.provider.name", "openai"),
                        attr("gen_ai.request.model", "text-embedding-3-small"),
                        attr("gen_ai.usage.input_tokens", tokens(question)),
                        attr("gen_ai.embeddings.dimension.count", 1536),
                    ]
                    + common,
                )
            )
            t = emb_end
        if topic.get("tool") and turn_no == 0:
            # the model asks for the order's status, the application runs the tool, the model answers
            call_id = f"call_{rng.getrandbits(96):024x}"
            call = {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "id": call_id, "name": "get_order_status", "arguments": {"order_id": fill["order"]}}
                ],
            }
            s, t = chat_span(ids, trace, http["spanId"], t, history, call, common, rng, finish="tool_call")
            spans.append(s)
            tool_end = t + timedelta(milliseconds=rng.randrange(20, 90))
            spans.append(
                span(
                    ids,
                    trace,
                    http["spanId"],
                    "execute_tool get_order_status",
                    1,
                    t,
                    tool_end,
                    [
                        attr("gen_ai.operation.name", "execute_tool"),
                        attr("gen_ai.tool.name", "get_order_status"),
                        attr("gen_ai.tool.call.id", call_id),
                        attr("gen_ai.tool.type", "function"),
                    ]
                    + common,
                )
            )
            t = tool_end
            status = {"order_id": fill["order"], "status": "in_transit", "carrier_city": fill["city"], "eta": fill["eta"]}
            history = history + [
                call,
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id, "response": status}]},
            ]
        s, t = chat_span(ids, trace, http["spanId"], t, history, text_msg("assistant", answer), common, rng)
        spans.append(s)
        history.append(text_msg("assistant", answer))
        t += timedelta(milliseconds=rng.randrange(2, 9))
        http["endTimeUnixNano"] = nanos(t)
        http["startTimeUnixNano"] = nanos(http_start)
        t += timedelta(seconds=rng.randrange(15, 140))  # the user reads and types
    return spans


def export_lines(spans: list[dict], rng: random.Random) -> list[str]:
    """Spans as the file exporter writes them: each line one export request of a batch of spans."""
    lines = []
    i = 0
    while i < len(spans):
        n = rng.randrange(1, 12)
        batch = spans[i : i + n]
        i += n
        req = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [attr(k, v) for k, v in RESOURCE]},
                    "scopeSpans": [{"scope": SCOPE, "spans": batch}],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.37.0",
                }
            ]
        }
        lines.append(json.dumps(req, ensure_ascii=False, separators=(",", ":")))
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--per-day", type=int, default=70, help="conversations per day")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    ids = Ids(rng)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for day in DAYS:
        spans = []
        for c in range(args.per_day):
            spans += conversation(rng, ids, day, c)
        spans.sort(key=lambda s: int(s["endTimeUnixNano"]))  # exported as spans end
        (out / f"traces-{day}.jsonl").write_text("\n".join(export_lines(spans, rng)) + "\n", encoding="utf-8")
    print(f"wrote {len(DAYS)} files to {out}")


if __name__ == "__main__":
    main()
