import Foundation
import XCTest
@testable import NN

/// Attention polls `Interruption` between its tasks: with a poll that holds, each worker stops at
/// its first task; with one that does not, the result is bit for bit the uninterrupted one.
final class InterruptionTests: XCTestCase {
    /// A thread-safe count of the poll's calls, answering `answer` each time.
    final class CountingPoll: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        let answer: Bool
        init(answer: Bool) { self.answer = answer }
        func poll() -> Bool { lock.lock(); count += 1; lock.unlock(); return answer }
        var calls: Int { lock.lock(); defer { lock.unlock() }; return count }
    }

    /// (q, k, v, heads, scoreBudget, tasks): D = 40 takes FusedAttention (tasks of 96 queries per
    /// batch and head); D = 8 the two-sgemm path (tasks of `scoreBudget / Nk` queries).
    let cases: [(what: String, q: Tensor, k: Tensor, heads: Int, budget: Int, tasks: Int)] = [
        ("fused, D 40", Tensor.random([2, 400, 80], seed: 301), Tensor.random([2, 300, 80], seed: 302), 2,
         Tensor.attentionScoreBudget, 2 * 2 * 5),
        ("two sgemms, D 8", Tensor.random([2, 200, 16], seed: 303), Tensor.random([2, 100, 16], seed: 304), 2,
         20 * 100, 2 * 2 * 10),
    ]

    func testAttentionRunsWholeWhenThePollDoesNotHold() {
        for c in cases {
            let whole = Tensor.attention(q: c.q, k: c.k, v: c.k, heads: c.heads, causal: false, scoreBudget: c.budget)
            let poll = CountingPoll(answer: false)
            let polled = Interruption.polling({ poll.poll() }) {
                Tensor.attention(q: c.q, k: c.k, v: c.k, heads: c.heads, causal: false, scoreBudget: c.budget)
            }
            XCTAssertEqual(bits(polled), bits(whole), c.what)
            XCTAssertEqual(poll.calls, c.tasks, "\(c.what): one poll per task")
        }
    }

    func testAttentionStopsAtTheFirstTaskOfEachWorkerWhenThePollHolds() {
        for c in cases {
            let poll = CountingPoll(answer: true)
            _ = Interruption.polling({ poll.poll() }) {
                Tensor.attention(q: c.q, k: c.k, v: c.k, heads: c.heads, causal: false, scoreBudget: c.budget)
            }
            XCTAssertEqual(poll.calls, min(Parallel.workers, c.tasks), "\(c.what): each worker polls once and stops")
        }
    }

    func testThePreviousPollIsRestored() {
        XCTAssertFalse(Interruption.isRequested, "no poll outside `polling`")
        Interruption.polling({ true }) {
            XCTAssertTrue(Interruption.isRequested)
            Interruption.polling({ false }) { XCTAssertFalse(Interruption.isRequested) }
            XCTAssertTrue(Interruption.isRequested)
        }
        XCTAssertFalse(Interruption.isRequested)
    }

}
