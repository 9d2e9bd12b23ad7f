import Dispatch

/// Runs `body(0..<count)` on `count` threads and waits; `count == 1` runs inline.
enum Parallel {
    static func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 {
            body(0)
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: count) { box.value($0) }
        }
    }
}

/// Lanes touch disjoint buffers; the compiler cannot see that, so the closure crosses threads in a box.
private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
