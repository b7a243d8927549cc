/*! leadscore.js — sends page views and events from a website to leadscore.
 * Embed:  <script async src="https://YOUR-LEADSCORE/js/leadscore.js" data-key="lsk_…ingest key…"></script>
 * API:    leadscore.page(), leadscore.track(event, properties), leadscore.identify(userId, traits)
 * Calls made before the script loads are queued by the snippet in the README and replayed.
 * It never throws into the page: every failure is swallowed, events wait in localStorage
 * and are retried with backoff. No dependencies, no third-party requests. */
(function (window, document) {
  'use strict'
  var STORE = 'leadscore_queue'
  var ID_KEY = 'leadscore_aid'
  var USER_KEY = 'leadscore_uid'
  var MAX_QUEUE = 500
  var BATCH = 20
  var FLUSH_MS = 1000
  var MAX_BACKOFF_MS = 60000

  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments) } catch (e) { /* never break the page */ }
    }
  }

  var script = document.currentScript || (function () {
    var all = document.getElementsByTagName('script')
    for (var i = all.length - 1; i >= 0; i--) { if (/\/js\/leadscore\.js/.test(all[i].src)) return all[i] }
    return null
  })()
  var existing = window.leadscore
  var config = {
    key: (script && script.getAttribute('data-key')) || (existing && existing.key) || '',
    host: (script && script.getAttribute('data-host')) || (script && script.src ? script.src.replace(/\/js\/leadscore\.js.*$/, '') : ''),
    autoPage: !(script && script.getAttribute('data-auto-page') === 'false')
  }

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID()
    return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0
      return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16)
    })
  }

  function readCookie(name) {
    var match = document.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'))
    return match ? decodeURIComponent(match[1]) : null
  }

  function writeCookie(name, value) {
    var secure = window.location.protocol === 'https:' ? '; Secure' : ''
    document.cookie = name + '=' + encodeURIComponent(value) + '; Max-Age=31536000; Path=/; SameSite=Lax' + secure
  }

  function storageGet(name) {
    try { return window.localStorage.getItem(name) } catch (e) { return null }
  }

  function storageSet(name, value) {
    try { window.localStorage.setItem(name, value) } catch (e) { /* private mode, full storage */ }
  }

  // The anonymous id lives in a first-party cookie and in localStorage; either restores the other.
  var anonymousId = readCookie(ID_KEY) || storageGet(ID_KEY) || uuid()
  writeCookie(ID_KEY, anonymousId)
  storageSet(ID_KEY, anonymousId)
  var userId = storageGet(USER_KEY)

  var queue = []
  try { queue = JSON.parse(storageGet(STORE) || '[]') || [] } catch (e) { queue = [] }
  var timer = null
  var failures = 0
  var sending = false

  function persist() { storageSet(STORE, JSON.stringify(queue.slice(-MAX_QUEUE))) }

  function campaign() {
    var result = {}
    var params = new URLSearchParams(window.location.search)
    var names = { utm_source: 'source', utm_medium: 'medium', utm_campaign: 'name', utm_term: 'term', utm_content: 'content' }
    for (var param in names) {
      var value = params.get(param)
      if (value) result[names[param]] = value
    }
    return result
  }

  function context() {
    return {
      library: { name: 'leadscore.js', version: '1' },
      page: { path: window.location.pathname, url: window.location.href, title: document.title, referrer: document.referrer, search: window.location.search },
      campaign: campaign(),
      userAgent: window.navigator.userAgent,
      locale: window.navigator.language
    }
  }

  function enqueue(message) {
    message.messageId = uuid()
    message.anonymousId = anonymousId
    if (userId) message.userId = userId
    message.timestamp = new Date().toISOString()
    message.context = context()
    queue.push(message)
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE)
    persist()
    schedule(queue.length >= BATCH ? 0 : FLUSH_MS)
  }

  function schedule(delay) {
    if (timer) return
    timer = setTimeout(function () { timer = null; flush() }, delay)
  }

  function send(batch, keepalive) {
    var body = JSON.stringify({ writeKey: config.key, sentAt: new Date().toISOString(), batch: batch })
    // text/plain keeps the request "simple": no CORS preflight.
    return window.fetch(config.host + '/v1/batch', { method: 'POST', body: body, keepalive: !!keepalive, headers: { 'Content-Type': 'text/plain' } })
      .then(function (response) {
        // 4xx other than 429 will not get better by retrying: drop the batch.
        if (response.status >= 500 || response.status === 429) throw new Error('HTTP ' + response.status)
      })
  }

  var flush = safe(function (keepalive) {
    if (sending || queue.length === 0 || !config.key || !window.fetch) return
    sending = true
    var batch = queue.slice(0, BATCH)
    send(batch, keepalive).then(function () {
      queue.splice(0, batch.length)
      persist()
      failures = 0
      sending = false
      if (queue.length) schedule(0)
    }, function () {
      sending = false
      failures += 1
      schedule(Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, failures)) * (0.5 + Math.random() / 2))
    })
  })

  var api = {
    key: config.key,
    page: safe(function (name, properties) {
      var props = properties || {}
      props.path = props.path || window.location.pathname
      props.url = props.url || window.location.href
      props.title = props.title || document.title
      props.referrer = props.referrer || document.referrer
      var utm = campaign()
      for (var k in utm) props['utm_' + (k === 'name' ? 'campaign' : k)] = utm[k]
      enqueue({ type: 'page', name: name || undefined, properties: props })
    }),
    track: safe(function (event, properties) {
      if (!event) return
      enqueue({ type: 'track', event: String(event), properties: properties || {} })
    }),
    identify: safe(function (id, traits) {
      if (id && typeof id === 'object') { traits = id; id = null }
      if (id) { userId = String(id); storageSet(USER_KEY, userId) }
      enqueue({ type: 'identify', traits: traits || {} })
    }),
    reset: safe(function () {
      userId = null
      storageSet(USER_KEY, '')
      anonymousId = uuid()
      writeCookie(ID_KEY, anonymousId)
      storageSet(ID_KEY, anonymousId)
    }),
    flush: function () { flush() },
    anonymousId: function () { return anonymousId }
  }

  // Replay calls queued by the loader snippet before this script arrived.
  var pending = existing && existing.q ? existing.q : []
  window.leadscore = api
  for (var i = 0; i < pending.length; i++) {
    var call = pending[i]
    if (call && api[call[0]]) api[call[0]].apply(api, Array.prototype.slice.call(call[1] || []))
  }
  if (config.autoPage) api.page()
  window.addEventListener('pagehide', safe(function () { flush(true) }))
  schedule(FLUSH_MS)
})(window, document)
