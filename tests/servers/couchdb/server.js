#!/usr/bin/env node
// A CouchDB-API test server for the test suite: express-pouchdb over
// pouchdb-core with the LevelDB (on disk) or memory adapter.
//
//   node server.js --dir DATA [--host 127.0.0.1] [--port 0] [--in-memory]
//                  [--admin NAME:PASSWORD]
//
// Port 0 picks a free one. Once it accepts connections it prints one line on
// stdout:  listening 127.0.0.1:PORT
// The server admin comes from --admin, else COUCHDB_ADMIN_USER and
// COUCHDB_ADMIN_PASSWORD (default admin:pass); with an admin set this is no
// "admin party", so _security, _users, PUT /db and design documents behave as
// on CouchDB 3.x for http://NAME:PASSWORD@HOST:PORT/.
// Its own log goes to DATA/log.txt (a full disk pauses it, the server goes
// on); data files live under DATA/ (LevelDB), or in memory with --in-memory.
//
// Differences from CouchDB 3.x seen with this server (code for real CouchDB):
// a Range request gets the whole body with 200; a database with an empty
// _security is open to everyone (CouchDB 3: admins only); refusals are 401
// where CouchDB says 403; _bulk_docs results can come back out of order.
// Two crashes of stock express-pouchdb on Node >= 15 are patched below: a
// non-admin `PUT /db` (pouchdb-server issue 374) and a non-admin `DELETE /db`.
'use strict';

const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const args = {
    host: process.env.COUCHDB_HOST || '127.0.0.1',
    port: process.env.COUCHDB_PORT || '0',
    dir: process.env.COUCHDB_DIR || null,
    inMemory: false,
    admin: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') args.host = value();
    else if (a === '--port' || a === '-p') args.port = value();
    else if (a === '--dir' || a === '-d') args.dir = value();
    else if (a === '--admin') args.admin = value();
    else if (a === '--in-memory') args.inMemory = true;
    else if (a === '--help' || a === '-h') usage();
    else if (!a.startsWith('-') && args.dir === null) args.dir = a;
    else usage(`unknown argument ${a}`);
  }
  if (!args.dir) usage('a data directory is required (--dir DATA)');
  if (!/^\d+$/.test(String(args.port))) usage(`bad port ${args.port}`);
  args.port = Number(args.port);
  if (args.admin === null) {
    args.admin = `${process.env.COUCHDB_ADMIN_USER || 'admin'}:` +
                 `${process.env.COUCHDB_ADMIN_PASSWORD || 'pass'}`;
  }
  const colon = args.admin.indexOf(':');
  if (colon < 1) usage('--admin wants NAME:PASSWORD');
  args.adminName = args.admin.slice(0, colon);
  args.adminPassword = args.admin.slice(colon + 1);
  return args;
}

function usage(error) {
  const text = 'usage: server.js --dir DATA [--host H] [--port P] [--in-memory] ' +
               '[--admin NAME:PASSWORD]\n';
  if (error) {
    process.stderr.write(`server.js: ${error}\n${text}`);
    process.exit(2);
  }
  process.stdout.write(text);
  process.exit(0);
}

const args = parseArgs(process.argv.slice(2));
const dataDir = path.resolve(args.dir);
fs.mkdirSync(dataDir, { recursive: true });

// express-pouchdb was written for Node versions on which an unhandled promise
// rejection was only a warning; on Node >= 15 it ends the process. Log it and
// keep serving (the request concerned has been answered by then).
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`server.js: unhandled rejection: ${reason && reason.stack || JSON.stringify(reason)}\n`);
});

// express-pouchdb opens and deletes databases through one promise chain in
// lib/create-or-delete-dbs.js. A non-admin `DELETE /db` rejects inside that
// chain, which then rejects every later open: the server stops answering for
// any database (and the rejection used to crash it, see above); it also drops
// the db from its cache before the refused destroy(). Replace both functions
// (before express-pouchdb's modules capture them) with ones whose queue
// survives a failure and that forget a db only once it is destroyed.
const dbRegistry = require('express-pouchdb/lib/create-or-delete-dbs');
let dbQueue = Promise.resolve();
function sequentially(fun) {
  const result = dbQueue.then(fun);
  dbQueue = result.catch(() => {});
  return result;
}
function dbCache(PouchDB) {
  if (!PouchDB.__dbCacheMap) PouchDB.__dbCacheMap = new Map();
  return PouchDB.__dbCacheMap;
}
dbRegistry.getOrCreateDB = (PouchDB, dbName) => sequentially(() => {
  const cache = dbCache(PouchDB);
  let db = cache.get(dbName);
  if (!db) {
    db = new PouchDB(dbName);
    cache.set(dbName, db);
  }
  return db;
});
dbRegistry.deleteDB = (PouchDB, dbName, opts) => sequentially(() => {
  const cache = dbCache(PouchDB);
  const db = cache.get(dbName);
  if (!db) return PouchDB.destroy(dbName, opts);
  return db.destroy(opts).then((result) => {
    cache.delete(dbName);
    return result;
  });
});

const express = require('express');
const expressPouchDB = require('express-pouchdb');
const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-replication'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require(args.inMemory ? 'pouchdb-adapter-memory' : 'pouchdb-adapter-leveldb'));

// deterministic_revs: false -- the default hashes the whole document,
// attachments included, as JSON: minutes and GBs for a big attachment.
const ServerPouchDB = PouchDB.defaults({
  prefix: dataDir + path.sep,
  deterministic_revs: false,
});

const pouchApp = expressPouchDB({
  mode: 'fullCouchDB',
  inMemoryConfig: true,           // no config.json; set up below on each start
  logPath: path.join(dataDir, 'log.txt'),
  overrideMode: { exclude: ['routes/fauxton'] },
});

// The log is a WriteStream in the data directory whose 'error' nobody handles:
// a full disk ended the process at the next log line. Keep serving instead;
// the log resumes, reopened, with the first line after its error.
function keepServingThroughLogErrors(logger) {
  const setFile = logger.setFile.bind(logger);
  logger.setFile = (file) => {
    setFile(file);
    const stream = logger._stream;
    stream.on('error', (err) => {
      process.stderr.write(`server.js: log ${file}: ${err.message}\n`);
      if (logger._stream === stream) logger._stream = null;  // destroyed: no end()
    });
  };
  const write = logger._write.bind(logger);
  logger._write = (level, message) => {
    if (!logger._stream) logger.setFile(logger._file);
    write(level, message);
  };
  logger._stream.end();
  logger._stream = null;
  logger.setFile(logger._file);
}
keepServingThroughLogErrors(pouchApp.couchLogger);

const config = pouchApp.couchConfig;
const set = (section, key, value) => new Promise((resolve, reject) => {
  config.set(section, key, value, (err) => (err ? reject(err) : resolve()));
});

const app = express();
app.disable('x-powered-by');
pouchApp.disable('x-powered-by');
app.use(pouchApp);

function shutdown(signal) {
  process.stderr.write(`server.js: ${signal}, exiting\n`);
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

// pouchdb-server issue 374: a non-admin `PUT /newdb` gets a rejected promise
// from the security wrapper of PouchDB.new(), and express-pouchdb's route calls
// .info() on it, which throws outside any handler and kills the process.
// Hand the route an object whose info() reports that error instead, so the
// client gets CouchDB's 401 "You are not a server admin." and the server lives.
function patchNewForNonAdmins() {
  const wrappedNew = ServerPouchDB.new;
  ServerPouchDB.new = function () {
    const result = wrappedNew.apply(this, arguments);
    if (result && typeof result.info !== 'function' && typeof result.then === 'function') {
      const pending = Promise.resolve(result);
      pending.catch(() => {});
      return {
        info: (callback) => {
          pending.then((db) => db.info(callback), (err) => callback(err));
        },
      };
    }
    return result;
  };
}

// The admin password is hashed (asynchronously) by set(); only then listen,
// so the first request already sees a server with an admin.
pouchApp.setPouchDB(ServerPouchDB)
  .then(patchNewForNonAdmins)
  .then(() => set('admins', args.adminName, args.adminPassword))
  .then(() => new Promise((resolve, reject) => {
    const server = app.listen(args.port, args.host, () => resolve(server));
    server.on('error', reject);
  }))
  .then((server) => {
    const address = server.address();
    process.stdout.write(`listening ${address.address}:${address.port}\n`);
  })
  .catch((err) => {
    process.stderr.write(`server.js: cannot start: ${err && err.stack || err}\n`);
    process.exit(1);
  });
