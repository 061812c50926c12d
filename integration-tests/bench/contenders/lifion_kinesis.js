// Contender (c) of integration-tests/bench/peers: the npm package lifion-kinesis, polling consumer,
// state (leases, checkpoints) in DynamoDB (dynalite), every record's data written as a line to a file.
//
// usage: node lifion_kinesis.js STREAM OUT_FILE EXPECTED_RECORDS
//        node lifion_kinesis.js --create-table NAME | --delete-table NAME
//
// Its state table is created before the measured run (--create-table, with the key schema lifion-kinesis
// itself creates): left to the library, a fresh table costs 20 s of waiting at start-up (the AWS SDK's
// tableExists waiter polls every 20 s), which a long-running consumer pays once, not per run.
// env:   KINESIS_ENDPOINT, DYNAMODB_ENDPOINT, AWS_REGION, NODE_PATH (where lifion-kinesis is installed),
//        KC_BENCH_LIFION_TABLE (its DynamoDB state table; a fresh name by default),
//        KC_BENCH_IDLE_EXIT (seconds without a record after which it gives up; default 60),
//        KC_BENCH_LIFION_PARSE_JSON ("auto" (default: the library parses JSON, written back with
//        JSON.stringify) or "false" (data kept as the decoded string)). "auto" is the library's default
//        and its cheaper mode here: with "false" the decoder still object-spreads the string (one property
//        per character, records.js), which measured 44 µs/record against 19 µs with "auto".
//
// Exits 0 once EXPECTED_RECORDS lines are written and flushed; 3 if it went idle before that.
'use strict';

const fs = require('fs');
const Kinesis = require('lifion-kinesis');

if (process.argv[2] === '--create-table' || process.argv[2] === '--delete-table') {
  tableAdmin(process.argv[2], process.argv[3]).catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
  return;
}

async function tableAdmin(what, name) {
  const { DynamoDB } = require('aws-sdk');
  const db = new DynamoDB({ endpoint: process.env.DYNAMODB_ENDPOINT, region: process.env.AWS_REGION || 'us-east-1' });
  if (what === '--delete-table') {
    await db.deleteTable({ TableName: name }).promise();
    return;
  }
  await db
    .createTable({
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: 'consumerGroup', AttributeType: 'S' },
        { AttributeName: 'streamName', AttributeType: 'S' }
      ],
      KeySchema: [
        { AttributeName: 'consumerGroup', KeyType: 'HASH' },
        { AttributeName: 'streamName', KeyType: 'RANGE' }
      ],
      TableName: name
    })
    .promise();
  for (;;) {
    const { Table } = await db.describeTable({ TableName: name }).promise();
    if (Table.TableStatus === 'ACTIVE') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const [stream, outFile, expectedText] = process.argv.slice(2);
const expected = Number(expectedText);
const idleExit = Number(process.env.KC_BENCH_IDLE_EXIT || 60) * 1000;
const parseJson = (process.env.KC_BENCH_LIFION_PARSE_JSON || 'auto') === 'auto' ? 'auto' : false;
const region = process.env.AWS_REGION || 'us-east-1';
const run = `${process.pid}-${Date.now()}`;

const out = fs.createWriteStream(outFile);
let written = 0;
let lastRecordAt = Date.now();

const kinesis = new Kinesis({
  streamName: stream,
  endpoint: process.env.KINESIS_ENDPOINT,
  region,
  createStreamIfNeeded: false,
  consumerGroup: `kc-bench-${run}`,
  dynamoDb: {
    endpoint: process.env.DYNAMODB_ENDPOINT,
    region,
    tableName: process.env.KC_BENCH_LIFION_TABLE || `kc-bench-lifion-${run}`
  },
  initialPositionInStream: 'TRIM_HORIZON',
  // The same pacing as the other contenders: 10,000 records per call, 200 ms between calls, 1 s
  // after an empty page.
  limit: 10000,
  pollDelay: 200,
  noRecordsPollDelay: 1000,
  // Stats every 30 s by default; they cost nothing measurable but are not needed.
  statsInterval: 3600000,
  shouldDeaggregate: false,
  shouldParseJson: parseJson,
  logger: { debug: process.env.KC_BENCH_DEBUG ? (...a) => console.error(new Date().toISOString(), 'debug', ...a) : () => {}, warn: (...a) => console.error('warn', ...a), error: (...a) => console.error('error', ...a) }
});

function finish(code) {
  out.end(() => process.exit(code));
}

kinesis.on('data', ({ records }) => {
  let text = '';
  for (const r of records) {
    const d = r.data;
    text += (typeof d === 'string' ? d : Buffer.isBuffer(d) ? d.toString('utf8') : JSON.stringify(d)) + '\n';
  }
  out.write(text);
  written += records.length;
  lastRecordAt = Date.now();
  if (written >= expected) finish(0);
});
kinesis.on('error', (err) => console.error('consumer error:', err && err.message));

setInterval(() => {
  if (Date.now() - lastRecordAt > idleExit) {
    console.error(`idle for ${idleExit / 1000} s after ${written} of ${expected} records`);
    finish(3);
  }
}, 1000).unref();

kinesis.startConsumer().catch((err) => {
  console.error('cannot start:', err);
  process.exit(2);
});
