//! Stream translation: upstream bytes → SSE events → canonical events →
//! the client's SSE bytes, with state across arbitrary byte splits.

use crate::canonical::StreamEvent;
use crate::codec::{StreamDecoder, StreamEncoder};
use crate::error::CodecError;
use crate::sse::{SseEvent, SseParser};

pub struct StreamTranslator {
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    sse: Vec<SseEvent>,
    events: Vec<StreamEvent>,
    /// Observes every canonical event (usage accounting, filters).
    seen: Vec<StreamEvent>,
    keep: bool,
}

impl StreamTranslator {
    pub fn new(
        decoder: Box<dyn StreamDecoder>,
        encoder: Box<dyn StreamEncoder>,
        max_event: usize,
    ) -> StreamTranslator {
        StreamTranslator {
            parser: SseParser::new(max_event),
            decoder,
            encoder,
            sse: Vec::new(),
            events: Vec::new(),
            seen: Vec::new(),
            keep: false,
        }
    }

    /// Keep a copy of every canonical event for `take_seen`.
    pub fn keep_events(mut self) -> StreamTranslator {
        self.keep = true;
        self
    }

    pub fn take_seen(&mut self) -> Vec<StreamEvent> {
        std::mem::take(&mut self.seen)
    }

    /// Translates a chunk; the output holds only complete client events.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.parser
            .feed(chunk, &mut self.sse)
            .map_err(|e| CodecError::Upstream {
                format: "sse",
                what: "stream",
                detail: e.to_string(),
            })?;
        for ev in self.sse.drain(..) {
            self.decoder.event(&ev, &mut self.events)?;
        }
        self.flush(out);
        Ok(())
    }

    /// The upstream closed the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let pending = self
            .parser
            .finish(&mut self.sse)
            .map_err(|e| CodecError::Upstream {
                format: "sse",
                what: "stream",
                detail: e.to_string(),
            })?;
        for ev in self.sse.drain(..) {
            self.decoder.event(&ev, &mut self.events)?;
        }
        let ended = self.decoder.end(&mut self.events);
        self.flush(out);
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
        for ev in self.events.drain(..) {
            self.encoder.event(&ev, out);
            if self.keep {
                self.seen.push(ev);
            }
        }
    }
}
