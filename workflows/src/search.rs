//! The job's search attributes: what operators filter jobs by in Temporal's Web UI, with
//! `temporal workflow list --query` and with `transcoder list`. All are keywords. The client
//! that starts a job sets the first two when the namespace has them registered; the workflow
//! adds the outcome and encoder when it ends, only if it was started with them (so a job on a
//! namespace without them, or a history recorded before them, runs and replays unchanged).

use temporalio_common::search_attributes::SearchAttributeKey;

/// `creatorId` of the payload.
pub const CREATOR: SearchAttributeKey<String> = SearchAttributeKey::keyword("TranscoderCreator");
/// `video` or `audio`.
pub const MEDIA_TYPE: SearchAttributeKey<String> =
    SearchAttributeKey::keyword("TranscoderMediaType");
/// `completed`, `failed` or `cancelled`, once the job has ended.
pub const OUTCOME: SearchAttributeKey<String> = SearchAttributeKey::keyword("TranscoderOutcome");
/// The video encoders used (`x264`, `nvenc`, or both joined by `,`), once the job has ended.
pub const ENCODER: SearchAttributeKey<String> = SearchAttributeKey::keyword("TranscoderEncoder");

/// Every attribute's name; each is a `Keyword`.
pub const NAMES: [&str; 4] = [
    "TranscoderCreator",
    "TranscoderMediaType",
    "TranscoderOutcome",
    "TranscoderEncoder",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_keys() {
        assert_eq!(
            [
                CREATOR.name(),
                MEDIA_TYPE.name(),
                OUTCOME.name(),
                ENCODER.name()
            ],
            NAMES
        );
    }
}
