/**
 * Runs last: nothing the suite started may keep the process alive (a server left listening, a
 * timer, a child process). Mocha runs without --exit, so a leftover handle would hang `npm test`.
 */
import { expect } from 'chai';

describe('99 teardown', () => {
  it('leaves no timers, sockets, servers or child processes behind', async function () {
    this.timeout(0); // mocha's own timeout timer would count as a live Timeout
    // let short-lived timers (keep-alive sockets of finished requests, last yields) run out
    for (let i = 0; i < 50 && process.getActiveResourcesInfo().includes('Timeout'); i++) await new Promise((r) => setTimeout(r, 100));
    const live = process.getActiveResourcesInfo().filter((k) => !['PipeWrap', 'TTYWrap', 'FSReqCallback', 'Immediate'].includes(k));
    expect(live, 'live resources that keep the process alive').to.deep.equal([]);
  });
});
