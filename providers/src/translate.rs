//! Stream translation: upstream bytes → SSE events → canonical events →
//! the client's SSE bytes, with state across arbitrary byte splits.

use crate::canonical::StreamEvent;
use crate::codec::{StreamDecoder, StreamEncoder};
use crate::error::CodecError;
use crate::sse::{SseEvent, SseParser};

/// Sees canonical events between decoding and encoding: may rewrite, drop
/// or insert them (filters, usage accounting).
pub trait EventHook {
    fn events(&mut self, events: &mut Vec<StreamEvent>);
    /// The upstream stream ended, completely or not.
    fn end(&mut self, events: &mut Vec<StreamEvent>);
}

/// No hook.
pub struct NoHook;

impl EventHook for NoHook {
    fn events(&mut self, _: &mut Vec<StreamEvent>) {}
    fn end(&mut self, _: &mut Vec<StreamEvent>) {}
}

pub struct StreamTranslator<H: EventHook = NoHook> {
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    sse: Vec<SseEvent>,
    events: Vec<StreamEvent>,
    pub hook: H,
}

impl StreamTranslator<NoHook> {
    pub fn new(
        decoder: Box<dyn StreamDecoder>,
        encoder: Box<dyn StreamEncoder>,
        max_event: usize,
    ) -> StreamTranslator<NoHook> {
        StreamTranslator::with_hook(decoder, encoder, max_event, NoHook)
    }
}

impl<H: EventHook> StreamTranslator<H> {
    pub fn with_hook(
        decoder: Box<dyn StreamDecoder>,
        encoder: Box<dyn StreamEncoder>,
        max_event: usize,
        hook: H,
    ) -> StreamTranslator<H> {
        StreamTranslator {
            parser: SseParser::new(max_event),
            decoder,
            encoder,
            sse: Vec::new(),
            events: Vec::new(),
            hook,
        }
    }

    /// Translates a chunk; the output holds only complete client events.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.parser.feed(chunk, &mut self.sse).map_err(sse_error)?;
        for ev in self.sse.drain(..) {
            self.decoder.event(&ev, &mut self.events)?;
        }
        self.flush(out);
        Ok(())
    }

    /// The upstream closed the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let pending = self.parser.finish(&mut self.sse).map_err(sse_error)?;
        for ev in self.sse.drain(..) {
            self.decoder.event(&ev, &mut self.events)?;
        }
        let ended = self.decoder.end(&mut self.events);
        self.hook.events(&mut self.events);
        self.hook.end(&mut self.events);
        self.flush_encoded(out);
        ended?;
        if pending {
            return Err(CodecError::Upstream {
                format: "sse",
                what: "stream",
                detail: "ended inside an event".into(),
            });
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        self.hook.events(&mut self.events);
        self.flush_encoded(out);
    }

    fn flush_encoded(&mut self, out: &mut Vec<u8>) {
        for ev in self.events.drain(..) {
            self.encoder.event(&ev, out);
        }
    }

    /// The client went away: let the hook see the end of what arrived.
    pub fn abandon(&mut self) {
        self.hook.end(&mut self.events);
        self.events.clear();
    }
}

fn sse_error(e: crate::sse::SseError) -> CodecError {
    CodecError::Upstream {
        format: "sse",
        what: "stream",
        detail: e.to_string(),
    }
}
