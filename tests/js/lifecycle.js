#!/usr/bin/env node
/*
 * One device session with the official AWS IoT Device SDK v2 for JavaScript
 * (aws-iot-device-sdk-v2 1.28.0), whose CRT offers ALPN x-amzn-mqtt-ca and sends SNI on every
 * port (shared/spec/clients.md §1): connect with mTLS, subscribe to --topic, publish one QoS 1
 * message to it and wait for it, unsubscribe, disconnect cleanly. iotmock's lifecycle events
 * for the session are checked by tests/integration/test_events_js_sdk.py.
 *
 * Usage:
 *   node lifecycle.js --host localhost --port 8883 --cert C --key K --client-id ID
 *        --topic T --protocol mqtt5|mqtt311 [--ca root-ca.pem] [--timeout-ms 15000]
 * Without --ca the system trust store is used, as the official samples do.
 *
 * Output: one JSON line. Success (exit 0): {"connected": true, "received": "<payload>"}.
 * Failure (exit 1): {"error": "<stage>: <message>"}. Bad arguments: exit 2.
 */
'use strict';

const { iot, mqtt, mqtt5 } = require('aws-iot-device-sdk-v2');

let done = false;

function finish(code, obj) {
    if (done) {
        return;
    }
    done = true;
    process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

function describe(e) {
    if (!e) {
        return 'unknown error';
    }
    return e.error_name ? `${e.error_name} (${e.message || e.error_code})` : (e.message || String(e));
}

function parseArgs(argv) {
    const opts = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
            throw new Error(`bad argument ${argv[i]}`);
        }
        opts[argv[i].slice(2)] = argv[i + 1];
    }
    for (const r of ['host', 'port', 'cert', 'key', 'client-id', 'topic', 'protocol']) {
        if (!opts[r]) {
            throw new Error(`--${r} is required`);
        }
    }
    opts.port = Number(opts.port);
    opts.timeoutMs = Number(opts['timeout-ms'] || 15000);
    return opts;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function sessionMqtt5(opts, payload) {
    const b = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(
        opts.host, opts.cert, opts.key);
    b.withPort(opts.port);
    if (opts.ca) {
        b.withCertificateAuthorityFromPath(undefined, opts.ca);
    }
    b.withConnectProperties({ clientId: opts['client-id'], keepAliveIntervalSeconds: 60 });
    const client = new mqtt5.Mqtt5Client(b.build());
    const received = new Promise((resolve) => client.on('messageReceived', (ev) => {
        resolve(Buffer.from(ev.message.payload).toString());
    }));
    await new Promise((resolve, reject) => {
        client.once('connectionSuccess', resolve);
        client.once('connectionFailure', (ev) => reject(new Error(describe(ev.error))));
        client.start();
    });
    await client.subscribe({ subscriptions: [{ topicFilter: opts.topic, qos: mqtt5.QoS.AtLeastOnce }] });
    await client.publish({ topicName: opts.topic, qos: mqtt5.QoS.AtLeastOnce, payload });
    const got = await received;
    await client.unsubscribe({ topicFilters: [opts.topic] });
    await new Promise((resolve) => {
        const timer = setTimeout(resolve, 3000);
        client.once('stopped', () => {
            clearTimeout(timer);
            resolve();
        });
        /* With a packet, stop() sends DISCONNECT first; without, it just closes the socket. */
        client.stop({ reasonCode: mqtt5.DisconnectReasonCode.NormalDisconnection });
    });
    client.close();
    return got;
}

async function sessionMqtt311(opts, payload) {
    let builder = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(opts.cert, opts.key)
        .with_endpoint(opts.host)
        .with_port(opts.port)
        .with_client_id(opts['client-id'])
        .with_clean_session(true)
        .with_keep_alive_seconds(1200);
    if (opts.ca) {
        builder = builder.with_certificate_authority_from_path(undefined, opts.ca);
    }
    const connection = new mqtt.MqttClient().new_connection(builder.build());
    await connection.connect();
    let deliver;
    const received = new Promise((resolve) => { deliver = resolve; });
    await connection.subscribe(opts.topic, mqtt.QoS.AtLeastOnce,
        (topic, p) => deliver(Buffer.from(p).toString()));
    await connection.publish(opts.topic, payload, mqtt.QoS.AtLeastOnce);
    const got = await received;
    await connection.unsubscribe(opts.topic);
    await Promise.race([connection.disconnect(), sleep(3000)]);
    return got;
}

async function main() {
    let opts;
    try {
        opts = parseArgs(process.argv.slice(2));
    } catch (e) {
        finish(2, { error: `arguments: ${e.message}` });
        return;
    }
    setTimeout(() => finish(1, { error: `timeout: not done within ${opts.timeoutMs} ms` }),
        opts.timeoutMs);
    const payload = `hello from ${opts['client-id']}`;
    try {
        const got = opts.protocol === 'mqtt5' ? await sessionMqtt5(opts, payload)
            : await sessionMqtt311(opts, payload);
        finish(0, { connected: true, received: got });
    } catch (e) {
        finish(1, { error: `session: ${describe(e)}` });
    }
}

main();
