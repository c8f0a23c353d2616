// Streaming with the Swift binding (iOS/macOS): feed PCM buffers from AVAudioEngine's input tap
// (or any source) into a session, and handle each chunk of frames as it becomes final.
//
// The Swift sources come from scripts/mobile-bindings (mert_mobile.swift, mert_mobileFFI.h,
// mert_mobileFFI.modulemap); package them with the static libraries as an XCFramework
// (mobile/README.md). Compiling needs Xcode: this file is not built on Linux.

import AVFoundation

final class LiveTagger {
    private let model: Model
    private let session: Session

    /// `modelURL`: a kit .safetensors file shipped in the app bundle (e.g. the q8 default tagger).
    init(modelURL: URL, format: AVAudioFormat) throws {
        model = try Model.fromPath(path: modelURL.path)
        session = try Session(model: model, sampleRate: UInt32(format.sampleRate),
                              channels: UInt32(format.channelCount))
    }

    /// Call from the input tap with each buffer (float, deinterleaved as AVAudioEngine gives it).
    func push(_ buffer: AVAudioPCMBuffer) throws {
        guard let channels = buffer.floatChannelData else { return }
        let n = Int(buffer.frameLength), c = Int(buffer.format.channelCount)
        var interleaved = [Float](repeating: 0, count: n * c)
        for f in 0..<n { for ch in 0..<c { interleaved[f * c + ch] = channels[ch][f] } }
        show(try session.push(pcm: interleaved))
    }

    /// At the end of the recording: the last chunks and the whole stream's tags.
    func finish() throws -> [Tag] {
        show(try session.finish())
        return model.tagNames().isEmpty ? [] : try session.tags()
    }

    private func show(_ chunks: [Embedding]) {
        for c in chunks { // 75 frames per second of audio
            let top = c.tags?.first.map { String(format: "  top tag: %@ %.2f", $0.name, $0.p) } ?? ""
            print("frames \(c.firstFrame)..\(c.firstFrame + c.frames) x \(c.dim)\(top)")
        }
    }
}
