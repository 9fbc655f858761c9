// A webhook receiver that parses every delivery with the CloudEvents JavaScript SDK
// (`cloudevents` on npm, pinned in package-lock.json): Node's http server reads the request,
// `HTTP.toEvent({ headers, body })` turns it into a CloudEvent (binary or structured mode, as
// the content type says) or refuses it ("no cloud event detected" for a body sent as plain
// application/json). Answers 204 to a delivery that parses, 400 otherwise.
//
//   node tests/receivers/cloudevents.cjs --record FILE [--answer-after-ms N]
//
// Binds a free loopback port and prints {"port": N} as its first line; appends one JSON line
// per request to FILE: arrival time, headers, the bytes read, the parsed CloudEvent (or why
// it did not parse), the status answered. The SDK is loaded from target/receivers-tools
// (tests/receivers/install.sh), or from RECEIVER_TOOLS.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { createRequire } = require("node:module");

const tools = process.env.RECEIVER_TOOLS || path.join(__dirname, "..", "..", "target", "receivers-tools");
const { HTTP } = createRequire(path.join(tools, "package.json"))("cloudevents");

function option(name, fallback) {
    const at = process.argv.indexOf(name);
    if (at < 0 || at + 1 >= process.argv.length) {
        if (fallback === undefined) {
            console.error(`missing ${name}`);
            process.exit(2);
        }
        return fallback;
    }
    return process.argv[at + 1];
}

const recordFile = option("--record");
const answerAfterMs = Number(option("--answer-after-ms", "0"));

function parsed(headers, body) {
    const event = HTTP.toEvent({ headers, body });
    if (Array.isArray(event)) {
        throw new Error(`a batch of ${event.length} events, not one event`);
    }
    return {
        specversion: event.specversion,
        id: event.id,
        type: event.type,
        source: event.source,
        subject: event.subject ?? null,
        time: event.time ?? null,
        datacontenttype: event.datacontenttype ?? null,
        data: event.data ?? null,
    };
}

const server = http.createServer((request, response) => {
    const at = Date.now() / 1000;
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
        const bytes = Buffer.concat(chunks);
        let event = null;
        let parseError = null;
        try {
            event = parsed(request.headers, bytes.toString("utf8"));
        } catch (error) {
            parseError = `${error.name}: ${error.message}`;
        }
        const status = parseError === null ? 204 : 400;
        const record = {
            at,
            receiver: "cloudevents-js",
            method: request.method,
            path: request.url,
            headers: request.headers,
            body_bytes: bytes.length,
            event,
            parse_error: parseError,
            status,
        };
        fs.appendFileSync(recordFile, JSON.stringify(record) + "\n");
        setTimeout(() => {
            response.writeHead(status, { "content-length": "0" });
            response.end();
        }, answerAfterMs);
    });
});

server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: server.address().port }));
});
