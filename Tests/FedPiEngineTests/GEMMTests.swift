import CKernels
import XCTest

@testable import FedPiEngine

final class GEMMTests: XCTestCase {
    /// OpenBLAS against the reference loop: every transpose combination, odd sizes, padded strides, beta.
    /// Tolerance: 1e-4 relative to the sum of |a·b| terms (float32 accumulation order differs).
    func testBLASMatchesReferenceKernel() {
        var g = SeededGenerator(seed: 3)
        let shapes = [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 10, 128), (129, 65, 31), (7, 300, 2)]
        for (m, n, k) in shapes {
            for transA in [false, true] {
                for transB in [false, true] {
                    for beta: Float in [0, 1, 0.5] {
                        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2
                        let a = (0..<((transA ? k : m) * lda)).map { _ in g.nextUnitFloat() * 2 - 1 }
                        let b = (0..<((transB ? n : k) * ldb)).map { _ in g.nextUnitFloat() * 2 - 1 }
                        let c0 = (0..<(m * ldc)).map { _ in g.nextUnitFloat() }
                        var fast = c0, slow = c0
                        fast.withUnsafeMutableBufferPointer { c in
                            GEMM.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda,
                                      b: b, ldb: ldb, beta: beta, c: c.baseAddress!, ldc: ldc)
                        }
                        slow.withUnsafeMutableBufferPointer { c in
                            GEMM.gemmReference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda,
                                               b: b, ldb: ldb, beta: beta, c: c.baseAddress!, ldc: ldc)
                        }
                        for i in 0..<m {
                            for j in 0..<n {
                                let tol: Float = 1e-4 * Float(k) + 1e-5
                                XCTAssertEqual(fast[i * ldc + j], slow[i * ldc + j], accuracy: tol,
                                               "m\(m) n\(n) k\(k) tA\(transA) tB\(transB) beta\(beta) at (\(i),\(j))")
                            }
                            // padding columns of C are untouched
                            for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j]) }
                        }
                    }
                }
            }
        }
    }

    /// FedPi's own kernel against the reference loop: every row remainder of its 6-row tile (m = 1...13),
    /// one and two vectors of 8 columns plus a scalar tail (n = 5, 8, 16, 21, 40), transposed A, padded
    /// strides, beta 0/1/0.5, and the Winograd shapes. Same tolerance as the BLAS test.
    func testUnpackedKernelMatchesReference() {
        var g = SeededGenerator(seed: 4)
        var shapes: [(Int, Int, Int)] = [(288, 64, 32), (338, 32, 64), (64, 32, 288), (0, 8, 3), (3, 8, 0)]
        for m in 1...13 { for n in [5, 8, 16, 21, 40] { shapes.append((m, n, 1 + (m * n) % 37)) } }
        for (m, n, k) in shapes {
            for transA in [false, true] {
                for beta: Float in [0, 1, 0.5] {
                    let lda = (transA ? m : k) + 3, ldb = n + 1, ldc = n + 2
                    let a = (0..<((transA ? k : m) * lda)).map { _ in g.nextUnitFloat() * 2 - 1 }
                    let b = (0..<(k * ldb)).map { _ in g.nextUnitFloat() * 2 - 1 }
                    let c0 = (0..<(m * ldc)).map { _ in g.nextUnitFloat() }
                    var fast = c0, portable = c0, slow = c0
                    fast.withUnsafeMutableBufferPointer { c in
                        GEMM.unpacked(transA: transA, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb,
                                      beta: beta, c: c.baseAddress!, ldc: ldc)
                    }
                    portable.withUnsafeMutableBufferPointer { c in
                        fedpi_gemm_portable(m, n, k, 0.75, a, transA ? 1 : lda, transA ? lda : 1, b, ldb, beta, c.baseAddress!, ldc)
                    }
                    slow.withUnsafeMutableBufferPointer { c in
                        GEMM.gemmReference(transA: transA, transB: false, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda,
                                           b: b, ldb: ldb, beta: beta, c: c.baseAddress!, ldc: ldc)
                    }
                    let tol: Float = 1e-4 * Float(k) + 1e-5
                    for i in 0..<m {
                        for j in 0..<n {
                            XCTAssertEqual(fast[i * ldc + j], slow[i * ldc + j], accuracy: tol, "m\(m) n\(n) k\(k) tA\(transA) beta\(beta) at (\(i),\(j))")
                            XCTAssertEqual(portable[i * ldc + j], slow[i * ldc + j], accuracy: tol, "portable m\(m) n\(n) k\(k) at (\(i),\(j))")
                        }
                        for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j], "padding column written") }
                    }
                }
            }
        }
    }

    /// The sparse product against the reference loop: A 0%, 20% and 100% nonzero, transposed or not,
    /// beta 0 (C holding NaN, which must not be read) and 1, n below, at and past the 96-column block
    /// (n = 5, 96, 100, 300), padded strides, AVX2 and portable kernels.
    func testSparseProductMatchesReference() {
        var g = SeededGenerator(seed: 7)
        let scratch = Tensor(shape: [0])
        for portable in [false, true] {
            fedpi_kernels_prefer_portable(portable ? 1 : 0)
            defer { fedpi_kernels_prefer_portable(0) }
            for (m, k) in [(1, 1), (5, 7), (16, 64), (13, 0)] {
                for n in [5, 96, 100, 300] {
                    for density: Float in [0, 0.2, 1] {
                        for transA in [false, true] {
                            for beta: Float in [0, 1] {
                                let lda = (transA ? m : k) + 3, ldb = n + 1, ldc = n + 2
                                let a = (0..<((transA ? k : m) * lda)).map { _ in g.nextUnitFloat() < density ? g.nextUnitFloat() * 2 - 1 : 0 }
                                let b = (0..<(k * ldb)).map { _ in g.nextUnitFloat() * 2 - 1 }
                                let c0 = (0..<(m * ldc)).map { i in beta == 0 && i % ldc < n ? Float.nan : g.nextUnitFloat() }
                                var sparse = c0, slow = c0.map { $0.isNaN ? 0 : $0 }
                                sparse.withUnsafeMutableBufferPointer { c in
                                    GEMM.sparse(transA: transA, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
                                                c: c.baseAddress!, ldc: ldc, scratch: scratch)
                                }
                                slow.withUnsafeMutableBufferPointer { c in
                                    GEMM.gemmReference(transA: transA, transB: false, m: m, n: n, k: k, a: a, lda: lda,
                                                       b: b, ldb: ldb, beta: beta, c: c.baseAddress!, ldc: ldc)
                                }
                                let context = "m\(m) n\(n) k\(k) density \(density) tA\(transA) beta\(beta) portable \(portable)"
                                for i in 0..<m {
                                    for j in 0..<n {
                                        XCTAssertEqual(sparse[i * ldc + j], slow[i * ldc + j], accuracy: 1e-5 * Float(k) + 1e-6, context)
                                    }
                                    for j in n..<ldc { XCTAssertEqual(sparse[i * ldc + j], c0[i * ldc + j], "padding column written: \(context)") }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func testReferenceKernelOnHandWorkedNumbers() {
        // [1 2; 3 4] x [5 6; 7 8] = [19 22; 43 50]
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        c.withUnsafeMutableBufferPointer { GEMM.gemmReference(transA: false, transB: false, m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: $0.baseAddress!, ldc: 2) }
        XCTAssertEqual(c, [19, 22, 43, 50])
        // A^T B: [1 3; 2 4] x [5 6; 7 8] = [26 30; 38 44]
        c.withUnsafeMutableBufferPointer { GEMM.gemmReference(transA: true, transB: false, m: 2, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, c: $0.baseAddress!, ldc: 2) }
        XCTAssertEqual(c, [26, 30, 38, 44])
    }
}
