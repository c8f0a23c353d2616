// Streaming with the Kotlin binding: feed a WAV file in 100 ms chunks, as an AudioRecord loop
// would on Android, print each chunk of frames as it becomes final (with its top tag when the
// model has a tagging head), then the whole stream's tags.
//
//   scripts/mobile-bindings   # writes $CARGO_TARGET_DIR/mobile-bindings/kotlin
//   kotlinc -cp /usr/share/java/jna.jar -include-runtime -d stream.jar \
//       target/mobile-bindings/kotlin/uniffi/mert_mobile/mert_mobile.kt examples/mobile/kotlin/Stream.kt
//   java -Djna.library.path=target/release -cp stream.jar:/usr/share/java/jna.jar StreamKt \
//       models/default/mert-tag-default.safetensors examples/audio/phrase.wav
// On Android, put libmert_mobile.so under jniLibs/<abi>/ and the generated .kt in the app.

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import uniffi.mert_mobile.Embedding
import uniffi.mert_mobile.MertException
import uniffi.mert_mobile.Model
import uniffi.mert_mobile.Session

fun show(chunks: List<Embedding>) {
    for (c in chunks) { // 75 frames per second of audio
        val top = c.tags?.firstOrNull()?.let { "  top tag: %s %.2f".format(it.name, it.p) } ?: ""
        val (a, b) = c.firstFrame.toLong() to (c.firstFrame + c.frames).toLong()
        println("frames %5d..%-5d (%6.2f-%6.2f s) x %d%s".format(a, b, a / 75.0, b / 75.0, c.dim.toLong(), top))
    }
}

fun main(args: Array<String>) {
    try {
        // 16-bit PCM WAV: find "fmt " and "data"
        val b = ByteBuffer.wrap(File(args[1]).readBytes()).order(ByteOrder.LITTLE_ENDIAN)
        var (pos, rate, channels) = Triple(12, 0, 0)
        var samples = ShortArray(0)
        while (pos + 8 <= b.limit()) {
            val id = String(b.array(), pos, 4)
            val size = b.getInt(pos + 4)
            if (id == "fmt ") { channels = b.getShort(pos + 10).toInt(); rate = b.getInt(pos + 12) }
            if (id == "data") { samples = ShortArray(size / 2) { b.getShort(pos + 8 + 2 * it) }; break }
            pos += 8 + size + (size and 1)
        }
        Model.fromPath(args[0]).use { model ->
            Session(model, rate.toUInt(), channels.toUInt()).use { session ->
                val chunk = rate / 10 * channels // 100 ms
                for (at in samples.indices step chunk) {
                    val end = minOf(at + chunk, samples.size)
                    show(session.push((at until end).map { samples[it] / 32768.0f }))
                }
                show(session.finish())
                if (model.tagNames().isNotEmpty()) {
                    println("whole stream: " + session.tags().take(5).joinToString(" ") { "%s %.2f".format(it.name, it.p) })
                }
            }
        }
    } catch (e: MertException) {
        System.err.println("error: ${e.message}")
        kotlin.system.exitProcess(1)
    }
}
