// Sends events to leadscore with Segment's official Node library, unchanged.
// Environment: LEADSCORE_HOST (http://127.0.0.1:PORT), LEADSCORE_WRITE_KEY (an ingest key).
import { Analytics } from '@segment/analytics-node'

const analytics = new Analytics({
  writeKey: process.env.LEADSCORE_WRITE_KEY,
  host: process.env.LEADSCORE_HOST,
  flushInterval: 100,
  maxRetries: 1,
})
const failures = []
analytics.on('error', (err) => failures.push(err))
analytics.identify({ userId: 'node-user', traits: { email: 'node@example.com', job_title: 'Director of Sales', company_size: 500, product_interest: 'platform' } })
analytics.page({ userId: 'node-user', name: 'Pricing', properties: { path: '/pricing/enterprise' } })
analytics.track({ userId: 'node-user', event: 'Form Submitted', properties: { form: 'quote' } })
analytics.track({ anonymousId: 'node-visitor', event: 'Webinar Attended', messageId: 'node-webinar-1', timestamp: new Date('2026-01-15T10:00:00Z') })
await analytics.closeAndFlush({ timeout: 10000 })
if (failures.length > 0) {
  console.error('node sdk: delivery failed', failures)
  process.exit(1)
}
console.log('node sdk: sent')
