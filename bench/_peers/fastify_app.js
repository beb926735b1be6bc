// The Fastify peer: a bare hello app, logger off as in Fastify's own benchmarks.
// bench/http_bench.py copies this file next to the cached node_modules and runs
// `node fastify_app.js` with PORT set; it serves the same paths as ours.
'use strict'

const fastify = require('fastify')({ logger: false })

fastify.get('/livez', async () => ({ status: 'alive' }))

fastify.get('/info', async () => ({
  name: 'installsure',
  version: '0.1.0',
  environment: 'development',
  build: {},
  features: { realTimeSync: true, fileProcessing: true, emailNotifications: true }
}))

fastify.listen({ host: '127.0.0.1', port: Number(process.env.PORT) }, (err) => {
  if (err) {
    console.error(err)
    process.exit(1)
  }
})
