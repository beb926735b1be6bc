// An autobahn|JS client for tests/realtime/test_autobahn_js.py: joins with a ticket,
// subscribes, publishes one presence event, and prints one JSON line per thing it sees.
const autobahn = require("autobahn");

const [url, ticket, serializer, topic, presence] = process.argv.slice(2);
const serializers = {
  json: [new autobahn.serializer.JSONSerializer()],
  msgpack: [new autobahn.serializer.MsgpackSerializer()],
  cbor: [new autobahn.serializer.CBORSerializer()],
};
const say = (what) => console.log(JSON.stringify(what));

const connection = new autobahn.Connection({
  url,
  realm: "installsure",
  authmethods: ["ticket"],
  onchallenge: () => ticket,
  serializers: serializers[serializer],
  max_retries: 0,
});

connection.onopen = (session) => {
  say({ joined: session.id });
  session
    .subscribe(topic, (args, kwargs, details) => say({ event: args, topic: details.topic }),
               { match: "prefix" })
    .then(() => session.publish(presence, ["js here"], {}, { acknowledge: true }))
    .then((publication) => say({ subscribed: true, published: publication.id }))
    .catch((error) => say({ error: error.error || String(error) }));
};
connection.onclose = (reason, details) => {
  say({ closed: reason, reason: details.reason || null });
  process.exit(0);
};
connection.open();
