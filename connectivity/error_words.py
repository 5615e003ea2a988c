"""A connection error in plain words: what is wrong and what to check.

The bridge stores what its client raised ("not reachable: ConnectionRefusedError: [Errno 111] Connect call
failed ('127.0.0.1', 4840)", ConnectionStatus.error); that stays as it is for the engineers, and the pages
that show it to plant users (the site page, the console) put ``in_words`` of it first. One rule for every
protocol's common failures: refused, unreachable, host name not found, no answer in time, TLS /
certificate, login refused, Modbus exception responses and unanswered requests, OPC UA Bad status codes,
a dropped connection. An error no rule knows gets "" (its raw text is all there is to show).

A point's error ("plant/line1/temp: value is not a finite number: 'Connection lost'") is about that point's
data, not the connection: only the rules for a device's answer (Modbus exceptions and unanswered requests,
OPC UA Bad codes) read it, and no rule reads a quoted value, which is what the device sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from connectivity.protocols import parse_endpoint

NOUNS = {"mqtt": "MQTT broker", "opcua": "OPC UA server", "modbus": "Modbus device"}

# Modbus exception codes (Modbus application protocol v1.1b3, section 7): name, and what to check.
MODBUS_EXCEPTIONS = {
    "1": ("illegal function", "the device does not support this kind of request: check the register type"),
    "2": (
        "illegal data address",
        "the device has no such register: check the address (does its manual count from 0 or from 1?) "
        "and the count",
    ),
    "3": ("illegal data value", "the device refused the request's values: check the count and the data type"),
    "4": ("server device failure", "the device failed while answering: check the device itself"),
    "5": ("acknowledge", "the device is still working on a long request"),
    "6": ("server device busy", "the device is busy: poll it less often"),
    "8": ("memory parity error", "the device found a memory error: check the device itself"),
    "10": (
        "gateway path unavailable",
        "the gateway has no path to that unit: check the unit id and the gateway's set-up",
    ),
    "11": (
        "gateway target device failed to respond",
        "the unit behind the gateway did not answer: is it on, and is the unit id right?",
    ),
}

# OPC UA status codes met in practice that say more than their name; any other Bad code gets its name in
# words ("BadNodeIdUnknown" -> "node id unknown").
OPCUA_CODES = {
    "BadNodeIdUnknown": "the server has no such node: check the point's node id (and its namespace index)",
    "BadNodeIdInvalid": "the node id is not valid for this server: check the point's node id",
    "BadNotReadable": "the node cannot be read: check the node id and the user's rights on the server",
    "BadNotWritable": "the node cannot be written: check the write target and the user's rights",
    "BadTypeMismatch": "the value written does not have the node's data type",
    "BadTooManySessions": "the server has too many sessions open: close unused clients or raise its limit",
    "BadServerHalted": "the server is stopping or stopped",
    "BadShutdown": "the server is stopping or stopped",
    "BadSessionIdInvalid": "the server dropped the session (restarted?); the bridge reconnects by itself",
    "BadSessionClosed": "the server closed the session; the bridge reconnects by itself",
    "BadTooManySubscriptions": "the server has too many subscriptions: raise its limit",
    "BadTooManyMonitoredItems": "the server takes no more monitored items: raise its limit or map fewer points",
}

TLS = re.compile(r"\bssl\b|\btls\b|certificate|wrong version number|BadSecurity\w*", re.I)
UNTRUSTED = re.compile(r"certificate verify failed|SSLCertVerificationError|hostname mismatch", re.I)
LOGIN = re.compile(
    r"not authori[sz]ed|bad user ?name or password|BadUserAccessDenied|BadIdentityToken\w*"
    r"|BadUserSignatureInvalid|authentication failed|code:13[45]\]",
    re.I,
)
DNS = re.compile(
    r"gaierror|name or service not known|name resolution|nodename nor servname|getaddrinfo failed"
    r"|no address associated",
    re.I,
)
REFUSED = re.compile(r"errno 111\b|connection refused|connect call failed|ConnectionRefusedError", re.I)
NO_ROUTE = re.compile(r"errno (?:101|113)\b|no route to host|network is unreachable", re.I)
MODBUS_EXCEPTION = re.compile(r"exception response (\d+)")
NO_RESPONSE = re.compile(r"no response received|no answer:", re.I)
CANNOT_CONNECT = re.compile(r"cannot connect to", re.I)
TIMEOUT = re.compile(r"TimeoutError|timed out|BadTimeout|no publish response", re.I)
BAD_CODE = re.compile(r"\b(Bad[A-Z][A-Za-z]+)\b")
REBIRTH = re.compile(
    r"^(\S+): no answer to (\d+) rebirth requests? since .*?: its (\d+) mapped metrics? (?:is|are) not held"
)
LOST = re.compile(
    r"^connection lost|connection (?:was )?lost|closed the connection|BadConnectionClosed", re.I
)


def _where(protocol: str, endpoint: str) -> tuple[str, str]:
    """(host, host:port) of the endpoint, as the protocol's client reads it; the endpoint itself when it
    does not parse (a configuration error says so elsewhere)."""
    try:
        _, host, port = parse_endpoint(protocol, endpoint)
    except (ValueError, KeyError):
        return endpoint, endpoint
    return host, f"{host}:{port}"


def _modbus_exception(code: str, write: bool) -> str:
    name, advice = MODBUS_EXCEPTIONS.get(code, ("unknown exception", "see the device's manual"))
    what = "refused a write" if write else "answered a read"
    return f"{{server}} {what} with Modbus exception {code} ({name}): {advice}."


def _rebirth(match: re.Match[str]) -> str:
    # No time: the bridge stamps its own clock (UTC) in the text, and the page says when the error came.
    node = match.group(1).replace("{", "{{").replace("}", "}}")  # the sentence is formatted next
    asked, metrics = int(match.group(2)), int(match.group(3))
    requests = f"{asked} rebirth request{'s' if asked != 1 else ''}"
    held = f"Its {metrics} mapped metric{'s are' if metrics != 1 else ' is'}"
    return (
        f"The Sparkplug node {node} did not answer {requests}: is it online, and does it support Node "
        f"Control/Rebirth? {held} dropped until it is born again."
    )


def _opcua_code(code: str) -> str:
    words = OPCUA_CODES.get(code) or re.sub(r"(?<!^)(?=[A-Z])", " ", code.removeprefix("Bad")).lower()
    return f"{{server}} answered {code}: {words}."


# A quoted value in an error is what a device sent ("value is not a finite number: 'timed out'"): no rule
# reads it as the bridge's own words.
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

# (pattern, sentence): the first rule whose pattern is found in the error wins, so the more particular
# come first (an untrusted certificate before any TLS failure, a refused login before a refused connection).
# In a sentence, {server} is "The OPC UA server at host:port", {host} the host alone.
Rule = tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]
RULES: list[Rule] = [
    (
        UNTRUSTED,
        lambda m, r: "{server} presented a certificate the bridge does not trust: check the connection's "
        "TLS CA file, and that the certificate is the server's and names its host.",
    ),
    (
        LOGIN,
        lambda m, r: "{server} refused the login: check the connection's user name and password, and that "
        "this user may read the data.",
    ),
    (
        DNS,
        lambda m, r: "The host name {host} was not found: is it spelt right, and can the bridge's machine "
        "look it up (DNS)?",
    ),
    (REFUSED, lambda m, r: "{server} refused the connection: is it running and is the port right?"),
    (
        NO_ROUTE,
        lambda m, r: "The bridge's machine has no network route to {host}: check the network, VPN or "
        "firewall between them.",
    ),
    (
        TLS,
        lambda m, r: "The secure (TLS) connection to {server_lower} failed: does the server expect TLS on "
        "this port, and are the connection's certificate and key files right?",
    ),
    # The device's own answers: the only rules a point's error is read by (ANSWER_RULES).
    (REBIRTH, lambda m, r: _rebirth(m)),
    (MODBUS_EXCEPTION, lambda m, r: _modbus_exception(m.group(1), "write" in r.lower())),
    (
        NO_RESPONSE,
        lambda m, r: "{server} did not answer a request: is the unit id right, and is the device (or the "
        "unit behind a gateway) on?",
    ),
    (
        CANNOT_CONNECT,
        lambda m, r: "The bridge could not connect to {server_lower}: is it on and on the network, and are "
        "the address and port right?",
    ),
    (
        TIMEOUT,
        lambda m, r: "{server} did not answer in time: can the bridge's machine reach it (network, "
        "firewall), and is it not overloaded?",
    ),
    (BAD_CODE, lambda m, r: _opcua_code(m.group(1))),
    (
        LOST,
        lambda m, r: "The connection to {server_lower} dropped; the bridge reconnects by itself. If it "
        "keeps happening, check the network and the server's log.",
    ),
]


ANSWER_RULES: list[Rule] = [
    rule for rule in RULES if rule[0] in (REBIRTH, MODBUS_EXCEPTION, NO_RESPONSE, BAD_CODE)
]


def in_words(error: str, protocol: str, endpoint: str, *, of_point: bool = False) -> str:
    """``error`` (a connection's stored last error) in plain words for a plant user, naming the server
    (``protocol`` and ``endpoint`` of its connection) and what to check; "" when no rule knows it.
    ``of_point``: the error is a point's (its topic's or node's data), not the connection's or its
    write-back's, so only a device's answer is put in words (a topic "site/ssl/temp" or a value
    "Connection lost" says nothing about the connection)."""
    if not error:
        return ""
    host, where = _where(protocol, endpoint)
    # The server's own name is no clue either: "cannot connect to ssl-plc.local:502" is no TLS failure.
    read = QUOTED.sub("''", error)
    for name in sorted({endpoint, where, host} - {""}, key=len, reverse=True):
        read = re.sub(re.escape(name), "<server>", read, flags=re.I)
    for pattern, sentence in ANSWER_RULES if of_point else RULES:
        if match := pattern.search(read):
            break
    else:
        return ""
    noun = NOUNS.get(protocol, "server")
    text = sentence(match, error).format(
        server=f"The {noun} at {where}", server_lower=f"the {noun} at {where}", host=host
    )
    return f"Write-back: {text}" if error.startswith("write-back:") else text
