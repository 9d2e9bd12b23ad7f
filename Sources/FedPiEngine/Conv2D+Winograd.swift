import CKernels

/// Winograd F(4×4, 3×3) convolution (Lavin & Gray, 2015): each 6×6 input tile gives a 4×4 output tile
/// with 36 multiplications per channel pair instead of 144, as 36 independent GEMMs
/// M_ξ (tiles × out) = V_ξ (tiles × in) · U_ξ (in × out), ξ = one of the 36 tile positions.
/// The tile transforms (B, G, A) live in `CKernels` (`fedpi_winograd_*`, AVX2 or portable); this file
/// chunks the batch, owns the scratch and runs the GEMMs. What differs from im2col is rounding: the
/// transforms' constants (4, 5, ⅙, 1⁄24 …) cost about one decimal digit, which the tests bound.
/// Tensors are NHWC.
enum Winograd {
    /// Positions of a 6×6 tile: the number of GEMMs per pass, and the leading dimension of U and dU.
    static let positions = 36
    /// Floats of V and M scratch per chunk of samples; one mnist-cnn sample (~0.5–0.7 MB) keeps a
    /// chunk's tiles in L2 between the transform, the GEMMs and the inverse transform.
    static let budget = 1 << 17

    struct Shape {
        var h, w, inputs, outputs, pad, oh, ow: Int
        var tilesPerSample: Int { ((oh + 3) / 4) * ((ow + 3) / 4) }
        var c: fedpi_winograd_shape { fedpi_winograd_shape(h: h, w: w, inputs: inputs, outputs: outputs, pad: pad, oh: oh, ow: ow) }
    }

    /// U[ξ][in][out] for the PyTorch (OC, C, 3, 3) weight `w`; see `fedpi_winograd_filters`.
    static func transformFilters(_ w: UnsafePointer<Float>, outputChannels oc: Int, inputChannels c: Int,
                                 into u: UnsafeMutablePointer<Float>) {
        fedpi_winograd_filters(w, oc, c, u)
    }

    /// Uᵀ[ξ][out][in] from U[ξ][in][out]: the B of the input gradient's products.
    static func transposeFilters(_ u: UnsafePointer<Float>, outputChannels oc: Int, inputChannels c: Int,
                                 into ut: UnsafeMutablePointer<Float>) {
        for xi in 0..<positions { fedpi_transpose(u + xi * c * oc, c, oc, ut + xi * c * oc) }
    }

    /// y (N, OH, OW, outputs) = conv(x (N, H, W, inputs), filters u, zero padding `pad`) + bias.
    static func convolve(_ x: UnsafePointer<Float>, batch n: Int, _ s: Shape, filters u: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, scratch: Tensor) {
        var shape = s.c
        forEachChunk(batch: n, s, scratch: scratch) { n0, n1, t, v, m, zeros in
            fedpi_winograd_input(x, n0, n1, &shape, zeros, v)
            for xi in 0..<positions {
                GEMM.unpacked(transA: false, m: t, n: s.outputs, k: s.inputs,
                              a: v + xi * t * s.inputs, lda: s.inputs, b: u + xi * s.inputs * s.outputs, ldb: s.outputs,
                              beta: 0, c: m + xi * t * s.outputs, ldc: s.outputs)
            }
            fedpi_winograd_output(m, n0, n1, &shape, bias, y)
        }
    }

    /// The backward pass of `convolve`, both halves from one output-gradient transform dM = A dY Aᵀ:
    /// - the filter gradient dU[ξ][out][in] = Σ_tiles dM_ξ[tile][out] · V_ξ[tile][in], V = Bᵀ d B the
    ///   input's tiles as in the forward pass; `addFilterGradient` folds dU back to 3×3 kernels. With
    ///   `accumulate`, adds to `gradU` (the micro-batches of one batch sum there and are folded once).
    ///   `gradU` holds 36 × outputs × inputs floats; out-major, because the kernel's 6-row tiles fit
    ///   64 output rows better than 32 input rows.
    /// - with `transposedFilters` (U[ξ][out][in]), the input gradient as the exact adjoint of the
    ///   forward pass: dV_ξ = dM_ξ · U_ξᵀ, then dx = Σ_tiles B dV Bᵀ added at the pixels each tile
    ///   read. The same tiles as the forward pass, where a full convolution of dY would need a tile grid
    ///   two pixels larger each way (49 instead of 36 tiles on conv2) and its own input transform.
    ///   `dx` is overwritten.
    /// (Forward is y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, so dL/dg = Gᵀ[(Bᵀ d B) ⊙ (A dy Aᵀ)]G and
    /// dL/dd = B[(G g Gᵀ) ⊙ (A dy Aᵀ)]Bᵀ.)
    static func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, batch n: Int, _ s: Shape,
                         filterGradient gradU: UnsafeMutablePointer<Float>, accumulate: Bool,
                         transposedFilters ut: UnsafePointer<Float>?, inputGradient dx: UnsafeMutablePointer<Float>?,
                         scratch: Tensor) {
        var shape = s.c
        if let dx { dx.update(repeating: 0, count: n * s.h * s.w * s.inputs) }
        forEachChunk(batch: n, s, scratch: scratch) { n0, n1, t, v, dm, zeros in
            fedpi_winograd_input(x, n0, n1, &shape, zeros, v)
            fedpi_winograd_output_gradient(dy, n0, n1, &shape, dm)
            for xi in 0..<positions {
                GEMM.unpacked(transA: true, m: s.outputs, n: s.inputs, k: t,
                              a: dm + xi * t * s.outputs, lda: s.outputs, b: v + xi * t * s.inputs, ldb: s.inputs,
                              beta: n0 == 0 && !accumulate ? 0 : 1, c: gradU + xi * s.inputs * s.outputs, ldc: s.inputs)
            }
            guard let ut, let dx else { return }
            // V is used up: dV takes its place
            for xi in 0..<positions {
                GEMM.unpacked(transA: false, m: t, n: s.inputs, k: s.outputs,
                              a: dm + xi * t * s.outputs, lda: s.outputs, b: ut + xi * s.inputs * s.outputs, ldb: s.inputs,
                              beta: 0, c: v + xi * t * s.inputs, ldc: s.inputs)
            }
            fedpi_winograd_input_gradient(v, n0, n1, &shape, dx)
        }
    }

    /// gw[out][in][3][3] += Gᵀ dU G; gw in PyTorch layout.
    static func addFilterGradient(_ gradU: UnsafePointer<Float>, inputs c: Int, outputs oc: Int, into gw: UnsafeMutablePointer<Float>) {
        fedpi_winograd_add_filter_gradient(gradU, c, oc, gw)
    }

    /// Splits the batch into chunks of at most `budget` floats of tile data and calls
    /// `body(n0, n1, tiles, V, M, zeros)` for each, with V (36 × tiles × inputs) and M (36 × tiles ×
    /// outputs) in `scratch`, then `inputs` zeros for the pixels outside the image.
    private static func forEachChunk(
        batch n: Int, _ s: Shape, scratch: Tensor,
        _ body: (Int, Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>) -> Void
    ) {
        let perSample = positions * s.tilesPerSample * (s.inputs + s.outputs)
        let chunk = max(1, budget / perSample)
        scratch.resize([min(chunk, n) * perSample + s.inputs])
        var n0 = 0
        while n0 < n {
            let n1 = min(n, n0 + chunk)
            let t = (n1 - n0) * s.tilesPerSample
            let v = scratch.data, m = v + positions * t * s.inputs, zeros = m + positions * t * s.outputs
            zeros.update(repeating: 0, count: s.inputs)
            body(n0, n1, t, v, m, zeros)
            n0 = n1
        }
    }
}
