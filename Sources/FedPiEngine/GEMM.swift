import CBLAS
import CKernels

/// Row-major single-precision matrix multiply: `C = alpha * op(A) * op(B) + beta * C`.
///
/// `op(A)` is M×K, `op(B)` is K×N, `C` is M×N; `lda`, `ldb`, `ldc` are the row strides of the matrices
/// as stored (before transposition). `gemm` goes to OpenBLAS; `unpacked` is FedPi's own kernel for
/// small products whose B fits in cache; `gemmReference` is the plain loop both are tested against.
public enum GEMM {
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C = alpha * op(A) * B + beta * C` by FedPi's register-tiled kernel (AVX2+FMA when the CPU has it,
    /// NEON on arm64), which reads A and B in place: no packing, no separate beta pass, no per-call
    /// set-up. 1.4–1.6× OpenBLAS on the Winograd products (K×N of B ≤ 64 Ki floats); use `gemm` for
    /// anything larger or with a transposed B. Fastest when N is a multiple of 8.
    public static func unpacked(
        transA: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        fedpi_gemm(m, n, k, alpha, a, transA ? 1 : lda, transA ? lda : 1, b, ldb, beta, c, ldc)
    }

    /// `C = op(A) * B + beta * C` (beta 0 or 1) over A's nonzeros alone (`fedpi_sparse_gemm`): for an
    /// A that is mostly zeros, such as an output gradient after ReLU and dropout. `scratch` is grown
    /// as needed.
    public static func sparse(
        transA: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, scratch: Tensor
    ) {
        precondition(beta == 0 || beta == 1, "GEMM.sparse: beta must be 0 or 1")
        if m == 0 || n == 0 { return }
        scratch.reserve((fedpi_sparse_gemm_scratch_bytes(m, k) + 3) / 4)
        fedpi_sparse_gemm(m, n, k, a, transA ? 1 : lda, transA ? lda : 1, b, ldb, beta, c, ldc, scratch.data)
    }

    /// The naive triple loop with a double accumulator; slow and obviously right.
    public static func gemmReference(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(av) * Double(bv)
                }
                let old = beta == 0 ? 0 : beta * c[i * ldc + j]
                c[i * ldc + j] = alpha * Float(sum) + old
            }
        }
    }

    /// Switches OpenBLAS to one thread when `condition` holds (each core then runs its own lane) and
    /// returns the previous count for the caller to restore.
    static func singleThreaded(if condition: Bool) -> Int {
        let previous = threads
        if condition { threads = 1 }
        return previous
    }

    /// Threads OpenBLAS may use (defaults to the number of cores, or `OPENBLAS_NUM_THREADS`).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }
}
