#!/usr/bin/env node
/*
 * Fleet provisioning against iotmock with the official AWS IoT Device SDK v2 for JavaScript
 * (aws-iot-device-sdk-v2 1.28.0, IotIdentityClientv2), the way a real device does it
 * (shared/spec/clients.md §1):
 *
 *   1. connect with the claim certificate (MQTT 5 or 3.1.1, mTLS, custom CA and port);
 *   2. CreateKeysAndCertificate (--mode keys) or CreateCertificateFromCsr (--mode csr);
 *   3. RegisterThing with template --template and parameters {"SerialNumber": --serial};
 *   4. write the new credentials to --out (certificate.pem, private.key), disconnect;
 *   5. reconnect with the NEW certificate and publish one QoS 1 message to
 *      devices/<thingName>/hello, waiting for the PUBACK.
 *
 * Usage:
 *   node provision.js --host localhost --port 8883 --ca root-ca.pem --cert claim-cert.pem
 *        --key claim-key.pem --mode keys|csr --protocol mqtt5|mqtt311 --template fleet-default
 *        --serial SN123 --out DIR [--csr device.csr --csr-key device.key] [--client-id ID]
 *        [--timeout-ms 15000]
 *
 * Output: exactly one JSON line on stdout.
 *   success (exit 0): {"certificateId", "thingName", "deviceConfiguration", "reconnected": true,
 *                      "published": true}
 *   failure (exit 1): {"error": "<stage>: <message>", "modeledError": <the service's rejection
 *                      {statusCode, errorCode, errorMessage}> | null}
 *   bad arguments (exit 2): {"error": ..., "modeledError": null}
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { iot, mqtt, mqtt5, iotidentity } = require('aws-iot-device-sdk-v2');

const USAGE = 'usage: node provision.js --host H --port P --ca CA --cert CERT --key KEY ' +
    '--mode keys|csr --protocol mqtt5|mqtt311 --template NAME --serial S --out DIR ' +
    '[--csr FILE --csr-key FILE] [--client-id ID] [--timeout-ms N]';

let done = false;

function finish(code, obj) {
    if (done) {
        return;
    }
    done = true;
    process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

function fail(stage, err) {
    let message = err && err.message ? err.message : String(err);
    if (err && err.internalError) { // a ServiceError wrapping a CrtError, e.g. a request timeout
        message += ` (${describeCrtError(err.internalError)})`;
    }
    const modeled = err && err.modeledError !== undefined ? err.modeledError : null;
    finish(1, { error: `${stage}: ${message}`, modeledError: modeled });
}

function parseArgs(argv) {
    const opts = {};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (!a.startsWith('--')) {
            throw new Error(`unexpected argument ${a}`);
        }
        const name = a.slice(2);
        if (i + 1 >= argv.length) {
            throw new Error(`${a} needs a value`);
        }
        opts[name] = argv[++i];
    }
    const required = ['host', 'port', 'ca', 'cert', 'key', 'mode', 'protocol', 'template',
        'serial', 'out'];
    for (const r of required) {
        if (!opts[r]) {
            throw new Error(`--${r} is required`);
        }
    }
    if (!['keys', 'csr'].includes(opts.mode)) {
        throw new Error('--mode must be keys or csr');
    }
    if (!['mqtt5', 'mqtt311'].includes(opts.protocol)) {
        throw new Error('--protocol must be mqtt5 or mqtt311');
    }
    if (opts.mode === 'csr' && (!opts.csr || !opts['csr-key'])) {
        throw new Error('--mode csr needs --csr and --csr-key');
    }
    opts.port = Number(opts.port);
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
        throw new Error('--port must be 1..65535');
    }
    opts.timeoutMs = opts['timeout-ms'] ? Number(opts['timeout-ms']) : 15000;
    opts.clientId = opts['client-id'] || `iotmock-js-${opts.mode}-${opts.protocol}-${process.pid}`;
    return opts;
}

function describeCrtError(e) {
    if (!e) {
        return 'unknown error';
    }
    return e.error_name ? `${e.error_name} (${e.message || e.error_code})` : (e.message || String(e));
}

/* A connection through the SDK's builders; the same shape for both protocols. */
async function connectMqtt5(opts, certPath, keyPath, clientId) {
    const builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(
        opts.host, certPath, keyPath);
    builder.withPort(opts.port);
    builder.withCertificateAuthorityFromPath(undefined, opts.ca);
    builder.withConnectProperties({ clientId, keepAliveIntervalSeconds: 60 });
    builder.withConnackTimeoutMs(5000);
    const client = new mqtt5.Mqtt5Client(builder.build());
    try {
        await new Promise((resolve, reject) => {
            client.once('connectionSuccess', resolve);
            client.once('connectionFailure', (ev) => {
                const rc = ev.connack ? ` CONNACK reason code ${ev.connack.reasonCode}` : '';
                reject(new Error(`connection failed: ${describeCrtError(ev.error)}${rc}`));
            });
            client.start();
        });
    } catch (e) {
        await stopMqtt5(client);
        throw e;
    }
    return {
        protocolClient: client,
        async publish(topic, payload) {
            const puback = await client.publish({
                topicName: topic, qos: mqtt5.QoS.AtLeastOnce, payload,
            });
            const rc = puback ? puback.reasonCode : undefined;
            if (rc !== mqtt5.PubackReasonCode.Success &&
                rc !== mqtt5.PubackReasonCode.NoMatchingSubscribers) {
                throw new Error(`PUBACK reason code ${rc}`);
            }
        },
        close: () => stopMqtt5(client),
    };
}

function stopMqtt5(client) {
    return new Promise((resolve) => {
        const timer = setTimeout(resolve, 3000);
        client.once('stopped', () => {
            clearTimeout(timer);
            resolve();
        });
        client.stop();
    }).then(() => client.close());
}

async function connectMqtt311(opts, certPath, keyPath, clientId) {
    const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(certPath, keyPath)
        .with_endpoint(opts.host)
        .with_port(opts.port)
        .with_certificate_authority_from_path(undefined, opts.ca)
        .with_client_id(clientId)
        .with_clean_session(true)
        .with_keep_alive_seconds(1200)
        .build();
    const client = new mqtt.MqttClient();
    const connection = client.new_connection(config);
    try {
        await connection.connect();
    } catch (e) {
        throw new Error(`connection failed: ${describeCrtError(e)}`);
    }
    return {
        protocolClient: connection,
        async publish(topic, payload) {
            await connection.publish(topic, payload, mqtt.QoS.AtLeastOnce);
        },
        async close() {
            await Promise.race([connection.disconnect(), sleep(3000)]);
        },
    };
}

function connect(opts, certPath, keyPath, clientId) {
    return opts.protocol === 'mqtt5' ? connectMqtt5(opts, certPath, keyPath, clientId)
        : connectMqtt311(opts, certPath, keyPath, clientId);
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function newIdentityClient(opts, conn) {
    const rrOptions = {
        maxRequestResponseSubscriptions: 2,
        maxStreamingSubscriptions: 0,
        operationTimeoutInSeconds: Math.max(1, Math.floor(opts.timeoutMs / 1000) - 2),
    };
    return opts.protocol === 'mqtt5'
        ? iotidentity.IotIdentityClientv2.newFromMqtt5(conn.protocolClient, rrOptions)
        : iotidentity.IotIdentityClientv2.newFromMqtt311(conn.protocolClient, rrOptions);
}

async function main() {
    let opts;
    try {
        opts = parseArgs(process.argv.slice(2));
    } catch (e) {
        finish(2, { error: `arguments: ${e.message}; ${USAGE}`, modeledError: null });
        return;
    }
    setTimeout(() => fail('timeout', new Error(`not done within ${opts.timeoutMs} ms`)),
        opts.timeoutMs);

    let stage = 'connect with claim certificate';
    try {
        const claim = await connect(opts, opts.cert, opts.key, opts.clientId);
        const identity = newIdentityClient(opts, claim);

        let certificateId, certificatePem, privateKey, token;
        if (opts.mode === 'keys') {
            stage = 'CreateKeysAndCertificate';
            const r = await identity.createKeysAndCertificate({});
            ({ certificateId, certificatePem, privateKey } = r);
            token = r.certificateOwnershipToken;
        } else {
            stage = 'CreateCertificateFromCsr';
            const csr = fs.readFileSync(opts.csr, 'utf8');
            const r = await identity.createCertificateFromCsr({ certificateSigningRequest: csr });
            ({ certificateId, certificatePem } = r);
            privateKey = fs.readFileSync(opts['csr-key'], 'utf8');
            token = r.certificateOwnershipToken;
        }

        stage = 'RegisterThing';
        const reg = await identity.registerThing({
            templateName: opts.template,
            certificateOwnershipToken: token,
            parameters: { SerialNumber: opts.serial },
        });

        stage = 'write credentials';
        fs.mkdirSync(opts.out, { recursive: true });
        const certPath = path.join(opts.out, 'certificate.pem');
        const keyPath = path.join(opts.out, 'private.key');
        fs.writeFileSync(certPath, certificatePem);
        fs.writeFileSync(keyPath, privateKey, { mode: 0o600 });

        stage = 'disconnect claim session';
        identity.close();
        await claim.close();

        stage = 'reconnect with the new certificate';
        const device = await connect(opts, certPath, keyPath, reg.thingName);

        stage = 'publish with the new certificate';
        await device.publish(`devices/${reg.thingName}/hello`,
            JSON.stringify({ hello: 'from the JS SDK v2', protocol: opts.protocol }));

        stage = 'disconnect device session';
        await device.close();

        finish(0, {
            certificateId,
            thingName: reg.thingName,
            deviceConfiguration: reg.deviceConfiguration,
            reconnected: true,
            published: true,
        });
    } catch (e) {
        fail(stage, e);
    }
}

process.on('unhandledRejection', (e) => fail('unhandled rejection', e));
process.on('uncaughtException', (e) => fail('uncaught exception', e));
main();
